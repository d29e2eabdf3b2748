"""The engine: the read path, single-flight and locks, stale-while-revalidate, tags and writes,
over an optional in-process L1 and an optional shared L2 (``layers``).

``Engine`` is the public API everything built on the engine uses (the HTTP cache, ``@cached``,
write-behind, sessions, the adapters): every operation has an awaitable twin prefixed with
``a``, written once in ``_async/ops.py`` (``_sync/ops.py`` is generated).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..results import Read, ReadStatus, TagSnapshot
from ._async.ops import AsyncEngineOps
from ._sync.ops import SyncEngineOps

__all__ = ["Engine", "Read", "ReadStatus", "Records", "TagSnapshot"]


class Engine(SyncEngineOps, AsyncEngineOps):
    """A layered cache engine (see ``cachekit_core.Cache`` for the user-facing class)."""

    @functools.cached_property
    def records(self) -> Records:
        """The records of this cache: values it keeps for their owner but does not own
        (sessions), in the same layers, namespace and signing as its entries, under keys of
        their own (``<namespace>:r:``). See ``Records``."""
        return Records(self)

    def close(self) -> None:
        """Stop background work and close sync connections."""
        if self._executor is not None:
            # Wait for refreshes already running: one finishing later would fill L1 and
            # restart the listener of a closed cache.
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self.shared is not None:
            self.shared.close()

    async def aclose(self) -> None:
        """Close the connections of the running event loop and stop background work."""
        for task in list(self._tasks):
            task.cancel()
        if self.shared is not None:
            await self.shared.aclose()
        self.close()


class Records:
    """``cache.records``: a key space for values the cache keeps but does not own, such as
    sessions (data that exists nowhere else), with the entry API's calls.

    - Stored under ``<namespace>:r:<key>`` (entries: ``<namespace>:e:<key>``), signed like
      entries with the full stored key under the MAC: a record never reads as an entry, nor
      an entry as a record, even when its bytes are copied across.
    - Never kept in any process's L1: every read asks Redis, so a change or delete made by
      another process is seen at once. (A memory-only cache keeps them in a store of their
      own, apart from its entries.)
    - Never touched by ``clear()``, by an overflow of lost invalidations, or by a replay of
      the data cache's lost invalidations: a record is only ever deleted by its own
      ``invalidate`` (queued, one by one, if Redis is away) or by its TTL.
    - Untagged: tag invalidations are the data cache's.
    """

    __slots__ = ("engine",)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def clock(self) -> Callable[[], float]:
        """The engine's clock (what records' expiry is counted in)."""
        return self.engine.clock

    def reachable(self) -> bool:
        """Whether Redis is expected to answer now (its circuit is closed)."""
        return self.engine.reachable()

    def read(self, key: str, *, local: bool = False) -> Read:
        """HIT (fresh), MISS, or UNAVAILABLE when Redis could not be asked."""
        return self.engine.read_record(key, local=local)

    async def aread(self, key: str, *, local: bool = False) -> Read:
        return await self.engine.aread_record(key, local=local)

    def write(self, mapping: Mapping[str, Any], *, ttl: float | None = None) -> bool:
        """Store records; True if every one reached Redis (memory-only: was stored)."""
        return self.engine.write_records(mapping, ttl=ttl)

    async def awrite(self, mapping: Mapping[str, Any], *, ttl: float | None = None) -> bool:
        return await self.engine.awrite_records(mapping, ttl=ttl)

    def insert(self, key: str, value: Any, ttl: float | None = None) -> bool | None:
        """SET NX: True stored, False taken, None Redis could not be asked."""
        return self.engine.insert_record(key, value, ttl)

    async def ainsert(self, key: str, value: Any, ttl: float | None = None) -> bool | None:
        return await self.engine.ainsert_record(key, value, ttl)

    def replace(self, key: str, value: Any, ttl: float | None = None) -> bool | None:
        """SET XX: True replaced, False absent (never resurrects), None unavailable."""
        return self.engine.replace_record(key, value, ttl)

    async def areplace(self, key: str, value: Any, ttl: float | None = None) -> bool | None:
        return await self.engine.areplace_record(key, value, ttl)

    def invalidate(self, keys: Iterable[str]) -> bool:
        """Delete records; True if Redis was reached (else deleted once it is back)."""
        return self.engine.invalidate_records(keys)

    async def ainvalidate(self, keys: Iterable[str]) -> bool:
        return await self.engine.ainvalidate_records(keys)

    def __repr__(self) -> str:
        return f"<Records of {self.engine!r}>"
