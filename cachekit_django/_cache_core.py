"""What ``CachekitCache``'s sync and async methods share: the engine it is bound to, Django's
keys and timeouts in the engine's terms, and how values are stored. No I/O here: the methods
themselves are written once in ``_async/cache_ops.py`` (``_sync/cache_ops.py`` is generated).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from cachekit_core import Cache, Read, ReadStatus, Records

from .conf import EngineSpec, engine_for, registry

__all__ = ["MISSING", "CacheCore", "dumps", "loads"]

# msgpack's integer range: ints outside it are pickled like any other value.
# Django's cache session keys start so (cachekit_django.sessions.KEY_PREFIX).
SESSION_KEY_PREFIX: Final = "cachekit_django.sessions"
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


#: What the engine's ``get`` returns for a miss (``None`` may be a stored value).
MISSING: Final = _Missing()


def dumps(value: Any) -> int | bytes:
    if type(value) is int and _INT_MIN <= value <= _INT_MAX:
        return value
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def loads(stored: Any) -> Any:
    # Bytes only come out of the engine after its HMAC check (or from this process's L1).
    return pickle.loads(stored) if isinstance(stored, bytes) else stored


class CacheCore(BaseCache):
    """``BaseCache`` bound to the process-wide engine of its store (see ``engine``)."""

    def __init__(self, server: str | Sequence[str], params: dict[str, Any]) -> None:
        super().__init__(params)
        self.spec = EngineSpec.from_cache_params(server, params)
        # Built now, so that a bad configuration fails where Django builds the backend.
        self._bound = (registry.generation, engine_for(self.spec))

    @property
    def engine(self) -> Cache:
        """The process-wide engine of this cache's store, shared by every alias and thread
        that describes it. Fetched again after ``conf.close_all()``: Django keeps a backend
        object per thread, which must not keep serving from an engine the process dropped
        (the pages would then use another engine than the next thread's backend)."""
        bound = self._bound
        if bound[0] != registry.generation:
            bound = self._bound = (registry.generation, engine_for(self.spec))
        return bound[1]

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
        return lambda: dumps(default() if callable(default) else default)

    @staticmethod
    def _is_record(key: str) -> bool:
        """Sessions' keys: kept in the engine's ``records`` (never in L1, never deleted by
        ``clear()`` or by an overflow of lost invalidations), whichever API reaches them, so
        that Django's contract holds (``cache.get(session.cache_key)`` is the session)."""
        return key.startswith(SESSION_KEY_PREFIX)

    def _store_of(self, key: str, record: bool) -> Cache | Records:
        return self.engine.records if record or self._is_record(key) else self.engine

    def _answer(self, found: Read) -> tuple[ReadStatus, Any]:
        """An engine read in Django terms: the value only when fresh, as ``get`` gives it. A
        stale-but-servable entry (``get_or_set`` may serve those) counts as a MISS here."""
        if not found.is_fresh(self.engine.clock()):
            status = ReadStatus.MISS if found.status is ReadStatus.HIT else found.status
            return status, None
        return found.status, loads(found.value)

    def _inserted(self, found: Read) -> bool | None:
        """``insert``'s answer for a TTL <= 0, which stores nothing: what a store-then-expire
        would have said (Django's backends answer so for ``add``)."""
        if found.status is ReadStatus.UNAVAILABLE:
            return None
        return not found.is_fresh(self.engine.clock())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.engine!r}>"
