"""cachekit's engine: a layered cache (in-process L1, Redis L2) for Python web apps."""

from ._version import __version__
from .cache import Cache
from .engine import Records
from .entry import Entry
from .exceptions import (
    CacheError,
    CacheUnavailable,
    ConfigurationError,
    SerializationError,
)
from .layers import MemoryLayer, RedisLayer
from .metrics import register_metrics
from .policy import Policy
from .results import Read, ReadStatus, TagSnapshot
from .writes import WriteBehind

__all__ = [
    "Cache",
    "CacheError",
    "CacheUnavailable",
    "ConfigurationError",
    "Entry",
    "MemoryLayer",
    "Policy",
    "Read",
    "ReadStatus",
    "Records",
    "RedisLayer",
    "SerializationError",
    "TagSnapshot",
    "WriteBehind",
    "__version__",
    "register_metrics",
]
