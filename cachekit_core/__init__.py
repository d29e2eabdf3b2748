"""cachekit's engine: a layered cache (in-process L1, Redis L2) for Python web apps."""

from .cache import Cache
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
from .writes import WriteBehind

__all__ = [
    "Cache",
    "CacheError",
    "CacheUnavailable",
    "ConfigurationError",
    "Entry",
    "MemoryLayer",
    "Policy",
    "RedisLayer",
    "SerializationError",
    "WriteBehind",
    "register_metrics",
]
__version__ = "0.1.0"
