"""The in-process L1: live Python objects in a cachetools cache (no serialization on a hit).

Bounded by entry count and by bytes (64 MiB by default). An entry is charged what it takes
to hold: its value's serialized size, plus its key and a fixed bookkeeping overhead. The
serialized size is known for every entry that went to or came from Redis (the codec records
the uncompressed length it wrote or read on ``Entry.size``); for a memory-only cache the layer
measures it once, when the entry is stored (never on a read).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, Literal

import cachetools
import msgpack

from ..entry import Entry
from ..exceptions import ConfigurationError

__all__ = ["DEFAULT_MAX_BYTES", "ENTRY_OVERHEAD", "POLICIES", "MemoryLayer", "measure"]

POLICIES: dict[str, type[cachetools.Cache[Any, Any]]] = {
    "lru": cachetools.LRUCache,
    "lfu": cachetools.LFUCache,
    "fifo": cachetools.FIFOCache,
    "rr": cachetools.RRCache,
}

#: The byte bound of a layer built without ``max_bytes`` (``Cache()``, ``Cache.from_url``).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Bytes charged per entry on top of its value and key: the ``Entry`` object, the key's
#: string header and cachetools' bookkeeping (measured: ~260 bytes on CPython 3.11).
ENTRY_OVERHEAD = 320


class MemoryLayer:
    """Bounded by entry count (``maxsize``) and by bytes (``max_bytes``, 64 MiB by default;
    ``None`` for no byte bound at all).

    ``ttl`` caps how long this layer trusts a copy of a shared entry; ``policy`` names a
    cachetools eviction policy ("lru", "lfu", "fifo", "rr") or is a factory taking
    ``(maxsize, getsizeof)`` and returning any ``cachetools.Cache`` (it must call
    ``getsizeof`` when an item is inserted, as cachetools' own caches do).

    Each entry is charged ``size(value) + len(key) + ENTRY_OVERHEAD`` bytes, where
    ``size(value)`` is, by default, the length of its serialized form: the uncompressed
    length the codec wrote to or read from Redis, or for an entry that never went there,
    ``measure(value)`` (computed once, when stored). ``sizeof`` replaces that measure.
    A value larger than ``max_bytes`` on its own is not kept in this layer.

    The bound is on serialized bytes: live Python objects of values made of many small
    parts (long lists of small numbers, dicts of short strings) take several times their
    serialized size. Pages and text take about their size.
    """

    name = "memory"
    shared: Literal[False] = False

    def __init__(
        self,
        maxsize: int = 10_000,
        ttl: float | None = None,
        *,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        policy: str | Callable[..., cachetools.Cache[Any, Any]] = "lru",
        sizeof: Callable[[Any], int] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ConfigurationError("MemoryLayer(maxsize=...) must be at least 1")
        if ttl is not None and ttl <= 0:
            raise ConfigurationError("MemoryLayer(ttl=...) must be positive or None")
        if max_bytes is not None and (
            not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1
        ):
            raise ConfigurationError(
                f"MemoryLayer(max_bytes={max_bytes!r}) must be a positive number of bytes, "
                "or None for no byte bound"
            )
        factory = POLICIES.get(policy) if isinstance(policy, str) else policy
        if factory is None:
            raise ConfigurationError(
                f"MemoryLayer(policy={policy!r}): choose one of {list(POLICIES)}"
            )
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._sizeof = sizeof
        self._charge = 0  # what the entry being inserted costs (see set)
        if max_bytes is None:
            self.data: cachetools.Cache[str, Entry] = factory(maxsize)
        else:
            # cachetools bounds one measure; bytes go to it, the entry count is checked here.
            self.data = factory(max_bytes, getsizeof=self._charged)
        # cachetools caches are not thread-safe; writes are short, so one lock is enough.
        # Reads go unlocked through the engine's hot path: the GIL keeps dict reads atomic
        # and a lost LRU touch only makes eviction slightly less exact.
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _charged(self, entry: Entry) -> int:
        # cachetools asks the size of an item once, as ``set`` inserts it under the lock:
        # the charge, which also counts the key cachetools does not pass, was set just before.
        return self._charge

    def size_of(self, key: str, entry: Entry) -> int:
        """The bytes ``entry`` is charged under ``key`` (measuring its value if need be)."""
        sizeof = self._sizeof
        if sizeof is not None:
            size = sizeof(entry.value)
        else:
            size = entry.size
            if not size:
                # Never went to Redis (a memory-only cache, or Redis was down): measure once.
                size = entry.size = measure(entry.value)
        return size + len(key) + ENTRY_OVERHEAD

    def get(self, key: str) -> Entry | None:
        try:
            return self.data[key]
        except KeyError:
            return None
        except Exception:  # racing eviction inside cachetools' LRU bookkeeping
            return None

    def set(self, key: str, entry: Entry) -> None:
        charge = self.size_of(key, entry) if self.max_bytes is not None else 0
        with self.lock:
            self._charge = charge
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
        """``size``: bytes charged (with ``max_bytes=None``: the entry count, as cachetools
        counts); ``max_bytes``: the bound (None: none)."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "entries": len(self),
            "size": self.currsize,
            "max_bytes": self.max_bytes,
        }


def measure(value: Any) -> int:
    """The size of ``value`` serialized (its msgpack encoding's length), the measure entries
    written to Redis get from the codec. Objects msgpack cannot encode (sets, dates, class
    instances, ...) count their full in-memory size; nothing is left out at any depth."""
    kind = type(value)
    if kind is bytes or kind is bytearray or (kind is str and value.isascii()):
        return len(value) + 5  # what msgpack adds: a type byte and a 32-bit length
    if kind is float or kind is bool or value is None:
        return 9
    if kind is int:
        return 9 if -(2**63) <= value < 2**64 else sys.getsizeof(value)
    extra = 0

    def other(obj: Any) -> None:
        nonlocal extra
        extra += deep_sizeof(obj)
        return None  # encoded as nil: its measured size is counted in ``extra``

    try:
        return len(msgpack.packb(value, use_bin_type=True, default=other)) + extra
    except Exception:  # deeper than msgpack recurses, integers beyond 64 bits, ...
        return deep_sizeof(value)


# Objects that belong to the program rather than to a value: never walked into or counted.
_SHARED = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
)


def deep_sizeof(value: Any) -> int:
    """The in-memory size of ``value`` and of everything it holds (each object once), walked
    without recursion so no nesting depth escapes it. Never raises."""
    seen: set[int] = set()
    stack = [value]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        try:
            if isinstance(obj, _SHARED):
                continue
            total += sys.getsizeof(obj)
            if not isinstance(obj, _ATOMS):
                stack.extend(_parts(obj))
        except Exception:  # an object that will not say: count it as a small one
            total += 64
    return total


_ATOMS = (str, bytes, bytearray, int, float, complex, bool, memoryview)


def _parts(obj: Any) -> list[Any]:
    """What ``obj`` holds: a container's items, an instance's attributes and slots."""
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, list | tuple | set | frozenset):
        return list(obj)
    parts = []
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        parts.append(attrs)
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if not isinstance(slot, str) or slot in ("__dict__", "__weakref__"):
                continue
            if slot.startswith("__") and not slot.endswith("__"):
                slot = f"_{cls.__name__.lstrip('_')}{slot}"  # name-mangled
            with contextlib.suppress(Exception):  # an unset slot
                parts.append(getattr(obj, slot))
    return parts
