"""What the session store's sync and async methods share (no I/O): its state, the cache it
talks to, and how failures are reported. The methods themselves are written once in
``_async/session_ops.py`` (``_sync/session_ops.py`` is generated)."""

# Django's cache API takes `timeout` (a TTL, not a deadline): ASYNC109 does not apply.
# ruff: noqa: ASYNC109

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol

from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.core.cache import BaseCache

from cachekit_core import ReadStatus
from cachekit_core.throttle import Throttle

from . import conf
from ._cache_core import SESSION_KEY_PREFIX

if TYPE_CHECKING:
    from django.contrib.sessions.base_session import AbstractBaseSession

__all__ = [
    "CREATE_ATTEMPTS",
    "CREATE_FAILED",
    "KEY_PREFIX",
    "UNREACHABLE",
    "PlainCacheCore",
    "SessionCache",
    "SessionCore",
    "django_log",
    "log",
    "warn",
]

KEY_PREFIX: Final = SESSION_KEY_PREFIX
# Collisions of 32 random characters do not happen; repeated add() refusals mean a cache that
# drops writes silently (memcached-style), so give up instead of hammering it.
CREATE_ATTEMPTS: Final = 100
CREATE_FAILED: Final = "Unable to create a new session key: is the session cache dropping writes?"
UNREACHABLE: Final = "the session cache could not be reached"

log = logging.getLogger("cachekit.sessions")
# cached_db reports cache write failures here with this message; keep it for drop-in parity.
django_log = logging.getLogger("django.contrib.sessions")
# During an outage every request would otherwise log the same line.
_throttle = Throttle()


class SessionCache(Protocol):
    """What the session store asks of its cache: ``CachekitCache``'s answers (see
    ``_async/cache_ops.py``), or a plain Django cache behind ``PlainCacheCore``'s twins."""

    def read(
        self, key: str, version: int | None = None, *, local: bool = True, record: bool = False
    ) -> tuple[ReadStatus, Any]: ...
    async def aread(
        self, key: str, version: int | None = None, *, local: bool = True, record: bool = False
    ) -> tuple[ReadStatus, Any]: ...
    def write(
        self,
        key: str,
        value: Any,
        timeout: Any = ...,
        version: int | None = None,
        *,
        record: bool = False,
    ) -> bool: ...
    async def awrite(
        self,
        key: str,
        value: Any,
        timeout: Any = ...,
        version: int | None = None,
        *,
        record: bool = False,
    ) -> bool: ...
    def insert(
        self,
        key: str,
        value: Any,
        timeout: Any = ...,
        version: int | None = None,
        *,
        record: bool = False,
    ) -> bool | None: ...
    async def ainsert(
        self,
        key: str,
        value: Any,
        timeout: Any = ...,
        version: int | None = None,
        *,
        record: bool = False,
    ) -> bool | None: ...
    def replace(
        self,
        key: str,
        value: Any,
        timeout: Any = ...,
        version: int | None = None,
        *,
        record: bool = False,
    ) -> bool | None: ...
    async def areplace(
        self,
        key: str,
        value: Any,
        timeout: Any = ...,
        version: int | None = None,
        *,
        record: bool = False,
    ) -> bool | None: ...
    def invalidate(
        self, keys: Iterable[str], version: int | None = None, *, record: bool = False
    ) -> bool: ...
    async def ainvalidate(
        self, keys: Iterable[str], version: int | None = None, *, record: bool = False
    ) -> bool: ...


class PlainCacheCore:
    """A Django cache that is not a ``CachekitCache`` (``SESSION_CACHE_ALIAS`` may name any):
    its API cannot tell "missing" from "unreachable", so its twins never answer UNAVAILABLE;
    what it raises reaches the session store, which treats a failed read or write as one."""

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache

    def __repr__(self) -> str:
        return repr(self.cache)


def warn(action: str, exc: BaseException | None = None) -> None:
    """Report a session read or write the cache could not serve (rate-limited)."""
    if _throttle.ready():
        why = UNREACHABLE if exc is None else f"{type(exc).__name__}: {exc}"
        log.warning("cachekit: session %s failed, session kept (%s)", action, why)


class SessionCore(DBStore):
    """The session store's state. The database methods inherited from Django's ``db`` store
    are used only with write-through (as ``cached_db`` does); otherwise no query is made."""

    cache_key_prefix = KEY_PREFIX
    write_through: bool | None = None  # None: CACHEKIT["SESSIONS"]["WRITE_THROUGH"]
    _cache: BaseCache  # the Django cache of SESSION_CACHE_ALIAS (named in log messages)
    _ops: SessionCache  # the same cache, answering as CachekitCache does
    _write_through: bool
    # The last load could not reach the cache: the session is kept but must not be
    # overwritten with the empty data this request saw.
    _unreadable: bool = False

    if TYPE_CHECKING:  # SessionBase / db.SessionStore internals that django-stubs leaves out

        def _get_session(self, no_load: bool = False) -> dict[str, Any]: ...
        async def _aget_session(self, no_load: bool = False) -> dict[str, Any]: ...
        def _get_new_session_key(self) -> str: ...
        async def _aget_new_session_key(self) -> str: ...
        def _get_or_create_session_key(self) -> str: ...
        async def _aget_or_create_session_key(self) -> str: ...
        def _get_session_from_db(self) -> AbstractBaseSession | None: ...
        async def _aget_session_from_db(self) -> AbstractBaseSession | None: ...

    @classmethod
    def _uses_database(cls) -> bool:
        """Whether sessions are kept in the database too (class attribute, else setting)."""
        if cls.write_through is None:
            return conf.session_write_through()
        return cls.write_through

    @property
    def key_salt(self) -> str:
        # Django salts with the class name; fixing it keeps rows of subclasses readable by
        # Session.get_decoded() and by Django's db / cached_db engines (all "SessionStore").
        return "django.contrib.sessions.SessionStore"

    @property
    def cache_key(self) -> str:
        return self.cache_key_prefix + self._get_or_create_session_key()

    async def acache_key(self) -> str:
        return self.cache_key_prefix + await self._aget_or_create_session_key()

    # Django's sync key is a property and its async one a method: one name for both, so that
    # one source serves both twins (and a subclass overriding either is still obeyed).
    def _cache_key(self) -> str:
        return self.cache_key

    async def _acache_key(self) -> str:
        return await self.acache_key()

    def _write_failed(self, exc: BaseException | None) -> None:
        """A save reached the database (write-through) or nothing, but not the cache."""
        if self._write_through:
            # cached_db's message and logger, for drop-in parity (Django's suite checks them).
            django_log.error("Error saving to cache (%s)", self._cache, exc_info=exc)
        else:
            warn("save", exc)
