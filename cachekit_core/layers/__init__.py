"""Storage layers: an in-process ``MemoryLayer`` and a shared ``RedisLayer``, and the
protocols (``LocalLayer``, ``SharedLayer``) the engine depends on."""

from .base import LocalLayer, SharedLayer
from .memory import MemoryLayer
from .redis import RedisLayer

__all__ = ["LocalLayer", "MemoryLayer", "RedisLayer", "SharedLayer"]
