"""Storage layers: an in-process ``MemoryLayer`` and a shared ``RedisLayer``."""

from .memory import MemoryLayer
from .redis import RedisLayer

__all__ = ["MemoryLayer", "RedisLayer"]
