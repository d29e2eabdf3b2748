"""``CachekitCache``: Django's cache API (``BaseCache``) on the layered cachekit engine.

    CACHES = {"default": {
        "BACKEND": "cachekit_django.cache.CachekitCache",
        "LOCATION": "redis://127.0.0.1:6379/1",  # in-process L1 + Redis L2; "" = in-process only
        "TIMEOUT": 300,  # also the default TTL of pages and fragments that name none
        "OPTIONS": {"NAMESPACE": "shop", "MAX_ENTRIES": 10_000, "L1_TTL": 30},
    }}

The engine of this alias (``CACHEKIT["CACHE"]``, default ``"default"``) also serves pages,
fragments, model invalidation and sessions: see ``cachekit_django.conf``.

Values are pickled here and reach the engine as bytes. The engine signs every payload it writes
to Redis (HMAC, key derived from ``SECRET_KEY``) and verifies it before handing it back, so
``pickle.loads`` only ever sees bytes this project wrote. L1 keeps those bytes rather than the
object, so mutating a returned value never changes the cache (Django's contract). Plain ints are
stored as they are, so ``incr`` stays one atomic engine operation.

A Redis outage never raises from these methods: reads miss (or are served by L1), writes land in
L1 only, exactly as the engine fails open.
"""

# Django's async cache API takes `timeout` (a TTL, not a deadline): ASYNC109 does not apply.
# ruff: noqa: ASYNC109

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from cachekit_core import Cache

from .conf import EngineSpec, engine_for, registry

__all__ = ["CachekitCache"]

# msgpack's integer range: ints outside it are pickled like any other value.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()


def _dumps(value: Any) -> int | bytes:
    if type(value) is int and _INT_MIN <= value <= _INT_MAX:
        return value
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def _loads(stored: Any) -> Any:
    # Bytes only come out of the engine after its HMAC check (or from this process's L1).
    return pickle.loads(stored) if isinstance(stored, bytes) else stored


class CachekitCache(BaseCache):
    """Django cache backend on ``cachekit_core.Cache``; ``self.engine`` is that engine."""

    def __init__(self, server: str | Sequence[str], params: dict[str, Any]) -> None:
        super().__init__(params)
        self.spec = EngineSpec.from_cache_params(server, params)
        self._is_strict = False
        # Built now, so that a bad configuration fails where Django builds the backend.
        self._bound = (registry.generation, engine_for(self.spec))
        self._strict: CachekitCache | None = None

    @property
    def engine(self) -> Cache:
        """The process-wide engine of this cache's store, shared by every alias and thread
        that describes it. Fetched again after ``conf.close_all()``: Django keeps a backend
        object per thread, which must not keep serving from an engine the process dropped
        (the pages would then use another engine than the next thread's backend)."""
        bound = self._bound
        if bound[0] != registry.generation:
            bound = self._bound = (
                registry.generation,
                engine_for(self.spec, strict=self._is_strict),
            )
        return bound[1]

    @property
    def strict(self) -> CachekitCache:
        """This cache on an engine that raises ``CacheUnavailable`` when Redis fails instead of
        failing open (and has no L1), for callers that must tell "missing" from "unreachable"."""
        if self._strict is None:
            twin = copy.copy(self)
            twin._is_strict = True
            twin._bound = (registry.generation, engine_for(self.spec, strict=True))
            twin._strict = twin
            self._strict = twin
        return self._strict

    def _ttl(self, timeout: Any) -> float:
        """Django timeout -> engine TTL: None is forever, <= 0 expires (the engine deletes)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return math.inf if timeout is None else float(timeout)

    def _key(self, key: str, version: int | None) -> str:
        made: str = self.make_and_validate_key(key, version=version)
        return made

    def _keys(self, keys: Iterable[str], version: int | None) -> dict[str, str]:
        return {self._key(key, version): key for key in keys}

    @staticmethod
    def _loader(default: Any) -> Callable[[], int | bytes]:
        # Runs in the caller's thread (or event loop) only on a miss, like Django's default().
        return lambda: _dumps(default() if callable(default) else default)

    # -- sync API ----------------------------------------------------------------------------
    def add(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        made, stored, ttl = self._key(key, version), _dumps(value), self._ttl(timeout)
        if ttl <= 0:
            # Nothing is stored; report what a store-then-expire would (Django's backends do).
            return not self.engine.has_key(made)
        return self.engine.add(made, stored, ttl=ttl)

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        stored = self.engine.get(self._key(key, version), _MISSING)
        return default if stored is _MISSING else _loads(stored)

    def set(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        self.engine.set(self._key(key, version), _dumps(value), ttl=self._ttl(timeout))

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self.engine.touch(self._key(key, version), self._ttl(timeout))

    def delete(self, key: str, version: int | None = None) -> bool:
        return self.engine.delete(self._key(key, version))

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        made = self._keys(keys, version)
        found = self.engine.get_many(made)
        return {key: _loads(found[k]) for k, key in made.items() if k in found}

    def get_or_set(
        self, key: str, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        # The engine's get_or_set: one loader call per key across threads and processes.
        made, ttl = self._key(key, version), self._ttl(timeout)
        return _loads(self.engine.get_or_set(made, self._loader(default), ttl=ttl))

    def has_key(self, key: str, version: int | None = None) -> bool:
        return self.engine.has_key(self._key(key, version))

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        made = self._key(key, version)
        try:
            return self.engine.incr(made, delta)
        except ValueError:
            raise ValueError(f"Key {key!r} not found") from None

    def set_many(
        self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        if not data:
            return []
        mapping = {self._key(key, version): _dumps(value) for key, value in data.items()}
        ttl = self._ttl(timeout)
        stored = self.engine.set_many(mapping, ttl=ttl)
        return [] if stored or ttl <= 0 else list(data)

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        made = list(self._keys(keys, version))
        if made:
            self.engine.delete_many(made)

    def clear(self) -> None:
        """Remove every entry of this cache's namespace (never FLUSHDB)."""
        self.engine.clear()

    def close(self, **kwargs: Any) -> None:
        """Django calls this after every request: the shared engine stays open (its pool and L1
        are the point); ``cachekit_django.conf.close_all()`` closes engines at shutdown."""

    # -- async API: the engine's own coroutines, no thread hop ----------------------------------
    async def aadd(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        made, stored, ttl = self._key(key, version), _dumps(value), self._ttl(timeout)
        if ttl <= 0:
            return not await self.engine.ahas_key(made)
        return await self.engine.aadd(made, stored, ttl=ttl)

    async def aget(self, key: str, default: Any = None, version: int | None = None) -> Any:
        stored = await self.engine.aget(self._key(key, version), _MISSING)
        return default if stored is _MISSING else _loads(stored)

    async def aset(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        await self.engine.aset(self._key(key, version), _dumps(value), ttl=self._ttl(timeout))

    async def atouch(
        self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return await self.engine.atouch(self._key(key, version), self._ttl(timeout))

    async def adelete(self, key: str, version: int | None = None) -> bool:
        return await self.engine.adelete(self._key(key, version))

    async def aget_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        made = self._keys(keys, version)
        found = await self.engine.aget_many(made)
        return {key: _loads(found[k]) for k, key in made.items() if k in found}

    async def aget_or_set(
        self, key: str, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        made, ttl = self._key(key, version), self._ttl(timeout)
        return _loads(await self.engine.aget_or_set(made, self._loader(default), ttl=ttl))

    async def ahas_key(self, key: str, version: int | None = None) -> bool:
        return await self.engine.ahas_key(self._key(key, version))

    async def aincr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        made = self._key(key, version)
        try:
            return await self.engine.aincr(made, delta)
        except ValueError:
            raise ValueError(f"Key {key!r} not found") from None

    async def adecr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        return await self.aincr(key, -delta, version=version)

    async def aset_many(
        self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        if not data:
            return []
        mapping = {self._key(key, version): _dumps(value) for key, value in data.items()}
        ttl = self._ttl(timeout)
        stored = await self.engine.aset_many(mapping, ttl=ttl)
        return [] if stored or ttl <= 0 else list(data)

    async def adelete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        made = list(self._keys(keys, version))
        if made:
            await self.engine.adelete_many(made)

    async def aclear(self) -> None:
        await self.engine.aclear()

    async def aclose(self, **kwargs: Any) -> None:
        """See ``close``: nothing to do per request."""

    def __repr__(self) -> str:
        return f"<CachekitCache {self.engine!r}>"
