"""The contract between the engine and its storage layers.

A cache has at most one ``LocalLayer`` (in process, holds live ``Entry`` objects, no I/O) in
front of at most one ``SharedLayer`` (bytes in and out, shared by every process, may be
unavailable). The engine depends on these protocols only; ``MemoryLayer`` and ``RedisLayer``
implement them. Everything else (tags, single-flight, stale-while-revalidate, decorators) is
written once in the engine.

A shared layer answers ``None`` for "could not ask" (an outage, the breaker open) and never
raises for it unless the cache was built with ``raise_on_error``. Writes that invalidate (a SET
over an old value, a DEL, a tag bump, a clear) and fail are remembered and replayed before the
layer's next successful call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Literal, Protocol

from ..entry import Entry
from ..keys import KeySpace

__all__ = ["BAD_VERSION", "Item", "LocalLayer", "Row", "SharedLayer"]

# What a shared read returns per key: the stored bytes, then the current versions of the tags
# whose keys were asked with it (None where a key is absent).
Row = list[bytes | None]
# What ``tag_versions`` gives for a version that is not an integer (written by someone else):
# real versions are positive, so it never matches one.
BAD_VERSION = -1
# A write: (layer key, the user's key for the L1 broadcast, stored bytes, TTL in ms or None).
Item = tuple[str, str, bytes, int | None]


class LocalLayer(Protocol):
    """In-process storage of live entries (no serialization on a hit)."""

    name: str
    shared: Literal[False]
    ttl: float | None  # how long a copy of a shared entry is trusted (None: as long as it lives)
    hits: int
    misses: int

    @property
    def data(self) -> MutableMapping[str, Entry]:
        """The mapping itself, for the decorator's hot path (a dict-like read, no call)."""

    def get(self, key: str) -> Entry | None: ...
    def set(self, key: str, entry: Entry) -> None: ...
    def delete(self, key: str) -> bool: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    def stats(self) -> dict[str, Any]: ...


class SharedLayer(Protocol):
    """Storage every process sees. Each I/O method has an ``a``-prefixed asyncio twin."""

    name: str
    shared: Literal[True]
    hits: int
    misses: int

    def bind(self, keys: KeySpace, *, raise_on_error: bool, tombstone_ttl: float = 60.0) -> None:
        """Attach the layer to one cache's namespace; a delete's tombstone is kept
        ``tombstone_ttl`` seconds."""

    # -- entries: ``None`` means unavailable --------------------------------------------------
    def read_one(self, key: str, tag_keys: tuple[str, ...]) -> Row | None: ...
    async def aread_one(self, key: str, tag_keys: tuple[str, ...]) -> Row | None: ...
    def read(self, keys: list[str]) -> list[Row | None] | None:
        """Entries with the current versions of the tags their headers name."""

    async def aread(self, keys: list[str]) -> list[Row | None] | None: ...
    def write(self, items: list[Item], origin: str) -> bool: ...
    async def awrite(self, items: list[Item], origin: str) -> bool: ...
    def write_if(self, items: list[Item], origin: str, since: int) -> list[bool] | None:
        """Store each item unless its key was deleted after ``since`` (microseconds): per
        item stored or refused; None when unavailable."""

    async def awrite_if(self, items: list[Item], origin: str, since: int) -> list[bool] | None: ...
    def add(
        self, key: str, blob: bytes, px: int | None, changed: str, origin: str
    ) -> bool | None: ...
    async def aadd(
        self, key: str, blob: bytes, px: int | None, changed: str, origin: str
    ) -> bool | None: ...
    def replace(
        self, key: str, blob: bytes, px: int | None, changed: str, origin: str
    ) -> bool | None: ...
    async def areplace(
        self, key: str, blob: bytes, px: int | None, changed: str, origin: str
    ) -> bool | None: ...
    def delete_if(self, key: str, blob: bytes) -> bool: ...
    async def adelete_if(self, key: str, blob: bytes) -> bool: ...
    def delete(self, keys: dict[str, str], origin: str) -> int | None:
        """Delete entries, each leaving a tombstone (see ``write_if``)."""

    async def adelete(self, keys: dict[str, str], origin: str) -> int | None: ...

    # -- records: values kept for their owner (sessions), never in L1, never dropped wholesale --
    def store_records(self, items: list[tuple[str, bytes, int | None]]) -> bool: ...
    async def astore_records(self, items: list[tuple[str, bytes, int | None]]) -> bool: ...
    def store_record(
        self, key: str, blob: bytes, px: int | None, *, nx: bool = False, xx: bool = False
    ) -> bool | None: ...
    async def astore_record(
        self, key: str, blob: bytes, px: int | None, *, nx: bool = False, xx: bool = False
    ) -> bool | None: ...
    def delete_records(self, keys: list[str]) -> bool: ...
    async def adelete_records(self, keys: list[str]) -> bool: ...

    # -- tags, locks, the namespace -------------------------------------------------------------
    def tag_versions(self, tag_keys: list[str]) -> list[int] | None: ...
    async def atag_versions(self, tag_keys: list[str]) -> list[int] | None: ...
    def bump_tags(self, tag_keys: list[str], origin: str) -> bool: ...
    async def abump_tags(self, tag_keys: list[str], origin: str) -> bool: ...
    def acquire(self, lock_key: str, token: str, px: int) -> bool | None: ...
    async def aacquire(self, lock_key: str, token: str, px: int) -> bool | None: ...
    def release(self, lock_key: str, token: str) -> None: ...
    async def arelease(self, lock_key: str, token: str) -> None: ...
    def clear(self, origin: str) -> bool:
        """Delete every entry of the namespace (entries only: never records or streams)."""

    async def aclear(self, origin: str) -> bool: ...

    # -- other processes' invalidations, lifecycle, counters -----------------------------------
    def start_listener(
        self, on_message: Callable[[bytes], None], on_connect: Callable[[], None]
    ) -> None: ...
    def available(self) -> bool:
        """Whether calls are expected to reach the layer now (its circuit is closed)."""

    def remember(self, keys: Mapping[str, str]) -> None:
        """Delete these entries (layer key -> user key) once the layer is reachable again."""

    def pending_invalidations(self) -> int: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...
