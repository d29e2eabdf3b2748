"""``CachekitCache``'s methods, written once as async code (``_sync/cache_ops.py`` is
generated, so each async method calls the engine's coroutine and each sync one its sync twin:
no thread hop). Django's cache API, plus the engine's answers in Django terms (``read``,
``write``, ``insert``, ``invalidate``) for callers that must tell "missing" from "Redis could
not be asked", such as the session store. ``record=True`` keeps the value in the engine's
``records`` (data the cache does not own, such as sessions: never in L1, never deleted by
``clear()`` or by an overflow of lost invalidations).

A Redis outage never raises from these methods but ``incr`` (see ``cachekit_django.cache``):
reads miss (or are served by L1), writes land in L1 only, as the engine fails open; the answers
say so instead.
"""

# Django's cache API takes `timeout` (a TTL, not a deadline): ASYNC109 does not apply. RUF100:
# the generated sync twin has no async function for ASYNC109 to flag.
# ruff: noqa: ASYNC109, RUF100

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT

from cachekit_core import ReadStatus

from .._cache_core import MISSING, CacheCore, dumps, loads


class AsyncCacheOps(CacheCore):
    # -- the engine's answers, in Django's terms (keys, versions, timeouts, pickled values) ----
    async def aread(
        self, key: str, version: int | None = None, *, local: bool = True, record: bool = False
    ) -> tuple[ReadStatus, Any]:
        """``(HIT, value)``, ``(MISS, None)``, or ``(UNAVAILABLE, value or None)`` when Redis
        could not be asked (the value is then this process's fresh copy, if it holds one).
        ``local=False`` asks Redis even when this process holds a copy, and uses none."""
        store = self._store_of(key, record)
        found = await store.aread(self._key(key, version), local=local)
        return self._answer(found)

    async def awrite(
        self,
        key: str,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        record: bool = False,
    ) -> bool:
        """``set`` that says whether the value reached Redis (an in-process cache: whether it
        was stored). False: this process may hold it, other processes do not."""
        mapping = {self._key(key, version): dumps(value)}
        store = self._store_of(key, record)
        return await store.awrite(mapping, ttl=self._ttl(timeout))

    async def ainsert(
        self,
        key: str,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        record: bool = False,
    ) -> bool | None:
        """``add`` that says why not: True stored, False ``key`` holds a fresh value, None
        Redis could not be asked (so whether the key is taken is unknown)."""
        made, ttl = self._key(key, version), self._ttl(timeout)
        store = self._store_of(key, record)
        if ttl <= 0:
            return self._inserted(await store.aread(made))
        return await store.ainsert(made, dumps(value), ttl)

    async def areplace(
        self,
        key: str,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        record: bool = False,
    ) -> bool | None:
        """``set`` only if ``key`` exists (SET XX): True replaced, False absent (a value
        deleted meanwhile, a logout, is never brought back), None Redis could not be asked."""
        made, ttl = self._key(key, version), self._ttl(timeout)
        return await self._store_of(key, record).areplace(made, dumps(value), ttl)

    async def ainvalidate(
        self, keys: Iterable[str], version: int | None = None, *, record: bool = False
    ) -> bool:
        """Delete ``keys`` in every layer and process. True iff Redis was reached (in-process:
        always); ``delete`` cannot say, it answers whether the key existed."""
        entries: list[str] = []
        records: list[str] = []
        for made, key in self._keys(keys, version).items():
            (records if record or self._is_record(key) else entries).append(made)
        reached = True
        if records:
            reached = await self.engine.records.ainvalidate(records)
        if entries:
            reached = await self.engine.ainvalidate(entries) and reached
        return reached

    # -- Django's cache API ----------------------------------------------------------------
    async def aadd(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return bool(await self.ainsert(key, value, timeout, version))

    async def aget(self, key: str, default: Any = None, version: int | None = None) -> Any:
        if self._is_record(key):
            status, value = await self.aread(key, version, local=False)
            return value if status is ReadStatus.HIT else default
        stored = await self.engine.aget(self._key(key, version), MISSING)
        return default if stored is MISSING else loads(stored)

    async def aset(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        if self._is_record(key):
            await self.awrite(key, value, timeout, version)
            return
        await self.engine.aset(self._key(key, version), dumps(value), ttl=self._ttl(timeout))

    async def atouch(
        self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return await self.engine.atouch(self._key(key, version), self._ttl(timeout))

    async def adelete(self, key: str, version: int | None = None) -> bool:
        if self._is_record(key):
            return await self.ainvalidate([key], version)
        return await self.engine.adelete(self._key(key, version))

    async def aget_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        made = self._keys(keys, version)
        found = await self.engine.aget_many(made)
        return {key: loads(found[k]) for k, key in made.items() if k in found}

    async def aget_or_set(
        self, key: str, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        # The engine's get_or_set: one loader call per key across threads and processes.
        made, ttl = self._key(key, version), self._ttl(timeout)
        return loads(await self.engine.aget_or_set(made, self._loader(default), ttl=ttl))

    async def ahas_key(self, key: str, version: int | None = None) -> bool:
        if self._is_record(key):
            status, _ = await self.aread(key, version, local=False)
            return status is ReadStatus.HIT
        return await self.engine.ahas_key(self._key(key, version))

    async def aincr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        made = self._key(key, version)
        try:
            return await self.engine.aincr(made, delta)
        except ValueError:
            raise ValueError(f"Key {key!r} not found") from None

    async def aset_many(
        self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        if not data:
            return []
        mapping = {self._key(key, version): dumps(value) for key, value in data.items()}
        ttl = self._ttl(timeout)
        stored = await self.engine.aset_many(mapping, ttl=ttl)
        return [] if stored or ttl <= 0 else list(data)

    async def adelete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        made = list(self._keys(keys, version))
        if made:
            await self.engine.adelete_many(made)

    async def aclear(self) -> None:
        """Remove every entry of this cache's namespace (never FLUSHDB)."""
        await self.engine.aclear()

    async def aclose(self, **kwargs: Any) -> None:
        """Django calls this after every request: the shared engine stays open (its pool and L1
        are the point); ``cachekit_django.conf.close_all()`` closes engines at shutdown."""
