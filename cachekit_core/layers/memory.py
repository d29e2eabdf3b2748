"""The in-process L1: live Python objects in a cachetools cache (no serialization on a hit)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, Literal

import cachetools

from ..entry import Entry
from ..exceptions import ConfigurationError

POLICIES: dict[str, type[cachetools.Cache[Any, Any]]] = {
    "lru": cachetools.LRUCache,
    "lfu": cachetools.LFUCache,
    "fifo": cachetools.FIFOCache,
    "rr": cachetools.RRCache,
}


class MemoryLayer:
    """Bounded by entry count (``maxsize``) and optionally by bytes (``max_bytes``).

    ``ttl`` caps how long this layer trusts a copy of a shared entry; ``policy`` names a
    cachetools eviction policy ("lru", "lfu", "fifo", "rr") or is a factory taking
    ``(maxsize, getsizeof)`` and returning any ``cachetools.Cache``.
    """

    name = "memory"
    shared: Literal[False] = False

    def __init__(
        self,
        maxsize: int = 10_000,
        ttl: float | None = None,
        *,
        max_bytes: int | None = None,
        policy: str | Callable[..., cachetools.Cache[Any, Any]] = "lru",
        sizeof: Callable[[Any], int] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ConfigurationError("MemoryLayer(maxsize=...) must be at least 1")
        if ttl is not None and ttl <= 0:
            raise ConfigurationError("MemoryLayer(ttl=...) must be positive or None")
        factory = POLICIES.get(policy) if isinstance(policy, str) else policy
        if factory is None:
            raise ConfigurationError(
                f"MemoryLayer(policy={policy!r}): choose one of {list(POLICIES)}"
            )
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._sizeof = sizeof or _approx_size
        if max_bytes is None:
            self.data: cachetools.Cache[str, Entry] = factory(maxsize)
        else:
            # cachetools bounds one measure; bytes go to it, the entry count is checked here.
            self.data = factory(max_bytes, getsizeof=lambda e: self._sizeof(e.value))
        # cachetools caches are not thread-safe; writes are short, so one lock is enough.
        # Reads go unlocked through the engine's hot path: the GIL keeps dict reads atomic
        # and a lost LRU touch only makes eviction slightly less exact.
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Entry | None:
        try:
            return self.data[key]
        except KeyError:
            return None
        except Exception:  # racing eviction inside cachetools' LRU bookkeeping
            return None

    def set(self, key: str, entry: Entry) -> None:
        with self.lock:
            try:
                self.data[key] = entry
            except ValueError:  # larger than max_bytes on its own: not kept in L1
                self.data.pop(key, None)
                return
            while len(self.data) > self.maxsize:
                self.data.popitem()

    def delete(self, key: str) -> bool:
        with self.lock:
            return self.data.pop(key, None) is not None

    def clear(self) -> None:
        with self.lock:
            self.data.clear()

    def __len__(self) -> int:
        return len(self.data)

    @property
    def currsize(self) -> float:
        return self.data.currsize

    def stats(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "entries": len(self),
            "size": self.currsize,
        }


def _approx_size(value: Any, _depth: int = 0) -> int:
    """Deep-ish size estimate: exact for str/bytes, bounded recursion for containers."""
    size = sys.getsizeof(value)
    if _depth > 3:
        return size
    if isinstance(value, dict):
        for k, v in value.items():
            size += _approx_size(k, _depth + 1) + _approx_size(v, _depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            size += _approx_size(item, _depth + 1)
    return size
