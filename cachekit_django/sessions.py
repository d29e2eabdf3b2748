"""A session engine on cachekit: ``SESSION_ENGINE = "cachekit_django.sessions"``.

Sessions live in the ``CACHES`` alias of cachekit's engine (``CACHEKIT["CACHE"]``, default
``"default"``), so they follow the pages to Redis, or in ``SESSION_CACHE_ALIAS`` when the
project sets it (normally a ``CachekitCache`` too). Keys are prefixed like Django's cache
sessions; values are pickled and signed by that cache. Set
``CACHEKIT = {"SESSIONS": {"WRITE_THROUGH": True}}`` (or subclass with ``write_through = True``)
to keep every session in the database too, as ``cached_db`` does; that needs
``django.contrib.sessions`` in ``INSTALLED_APPS``.

A cache outage never logs anyone out. Reads go through the cache's strict twin, which raises
instead of answering "missing", so an unreachable Redis is not mistaken for an unknown session:
with write-through the database answers; without it, the session key is kept (the request sees
an empty session) and the stored session is not overwritten by that empty one. A new session
cannot be created, nor a session deleted, while the store is unreachable: those raise, because
a logout that silently left the session usable would be worse than an error page.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.core.cache import BaseCache, caches

from . import conf
from .cache import CachekitCache

if TYPE_CHECKING:
    from django.contrib.sessions.base_session import AbstractBaseSession

__all__ = ["KEY_PREFIX", "SessionStore"]

KEY_PREFIX = "cachekit_django.sessions"
# Collisions of 32 random characters do not happen; repeated add() refusals mean a cache that
# drops writes silently (memcached-style), so give up instead of hammering it.
CREATE_ATTEMPTS = 100

_CREATE_FAILED = "Unable to create a new session key: is the session cache dropping writes?"

log = logging.getLogger("cachekit.sessions")
# cached_db reports cache write failures here with this message; keep it for drop-in parity.
django_log = logging.getLogger("django.contrib.sessions")
_last_warning = 0.0


def _warn(action: str, exc: BaseException) -> None:
    # Rate-limited: during an outage every request would otherwise log the same line.
    global _last_warning
    now = time.monotonic()
    if now - _last_warning > 10.0:
        _last_warning = now
        kind = type(exc).__name__
        log.warning("cachekit: session %s failed, session kept (%s: %s)", action, kind, exc)


def _write_through(store: type[SessionStore]) -> bool:
    if store.write_through is None:
        return conf.session_write_through()
    return store.write_through


class SessionStore(DBStore):
    """Cache-backed sessions. The database methods inherited from Django's ``db`` store are used
    only with write-through (as ``cached_db`` does); otherwise no query is ever made."""

    cache_key_prefix = KEY_PREFIX
    write_through: bool | None = None  # None: CACHEKIT["SESSIONS"]["WRITE_THROUGH"]

    if TYPE_CHECKING:  # SessionBase / db.SessionStore internals that django-stubs leaves out
        _session: dict[str, Any]

        def _get_session(self, no_load: bool = False) -> dict[str, Any]: ...
        async def _aget_session(self, no_load: bool = False) -> dict[str, Any]: ...
        def _get_new_session_key(self) -> str: ...
        async def _aget_new_session_key(self) -> str: ...
        def _get_or_create_session_key(self) -> str: ...
        async def _aget_or_create_session_key(self) -> str: ...
        def _get_session_from_db(self) -> AbstractBaseSession | None: ...
        async def _aget_session_from_db(self) -> AbstractBaseSession | None: ...

    def __init__(self, session_key: str | None = None) -> None:
        self._cache = cache = caches[conf.session_alias()]
        self._ops: BaseCache = cache.strict if isinstance(cache, CachekitCache) else cache
        self._write_through = _write_through(type(self))
        # The last load could not reach the cache: the session is kept but must not be
        # overwritten with the empty data this request saw.
        self._unreadable = False
        super().__init__(session_key)

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

    # -- sync ------------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        self._unreadable = False
        try:
            data = self._ops.get(self.cache_key)
        except Exception as exc:
            _warn("read", exc)
            if self._write_through:
                return self._load_db(refill=False)
            self._unreadable = True
            return {}
        if data is not None:
            session: dict[str, Any] = data
            return session
        if self._write_through:
            return self._load_db(refill=True)
        self._session_key = None  # an unknown key is never reused (session fixation)
        return {}

    def _load_db(self, *, refill: bool) -> dict[str, Any]:
        row = self._get_session_from_db()  # drops the key itself when there is no such row
        if row is None:
            return {}
        data: dict[str, Any] = self.decode(row.session_data)
        if refill:
            try:
                age = self.get_expiry_age(expiry=row.expire_date)
                self._ops.set(self.cache_key, data, age)
            except Exception as exc:
                _warn("cache refill", exc)
        return data

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            if self._ops.has_key(self.cache_key_prefix + session_key):
                return True
        except Exception as exc:
            _warn("read", exc)
        return self._write_through and super().exists(session_key)

    def create(self) -> None:
        for _ in range(CREATE_ATTEMPTS):
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue  # the key is taken: draw another
            self.modified = True
            return
        raise RuntimeError(_CREATE_FAILED)

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        if self._write_through:
            super().save(must_create)  # the database decides CreateError / UpdateError
            try:
                self._ops.set(self.cache_key, self._session, self.get_expiry_age())
            except Exception:
                # The engine queues a delete of the old copy and replays it before its next call.
                django_log.exception("Error saving to cache (%s)", self._cache)
            return
        data = self._get_session(no_load=must_create)
        if must_create:
            if not self._ops.add(self.cache_key, data, self.get_expiry_age()):
                raise CreateError
            return
        if self._unreadable:
            _warn("save (data unread)", RuntimeError("the cache was unreachable at load"))
            return
        try:
            # Only an existing session is updated: a concurrent logout must not be undone.
            present = self._ops.has_key(self.cache_key)
            if present:
                self._ops.set(self.cache_key, data, self.get_expiry_age())
        except Exception as exc:
            _warn("save", exc)
            return
        if not present:
            raise UpdateError

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        if self._write_through:
            super().delete(session_key)
        self._ops.delete(self.cache_key_prefix + session_key)  # errors propagate, see above

    @classmethod
    def clear_expired(cls) -> None:
        if _write_through(cls):  # cache entries expire by TTL on their own
            super().clear_expired()

    # -- async: the cache's coroutines (the database's when writing through) -------------------
    async def aload(self) -> dict[str, Any]:
        self._unreadable = False
        try:
            data = await self._ops.aget(await self.acache_key())
        except Exception as exc:
            _warn("read", exc)
            if self._write_through:
                return await self._aload_db(refill=False)
            self._unreadable = True
            return {}
        if data is not None:
            session: dict[str, Any] = data
            return session
        if self._write_through:
            return await self._aload_db(refill=True)
        self._session_key = None
        return {}

    async def _aload_db(self, *, refill: bool) -> dict[str, Any]:
        row = await self._aget_session_from_db()
        if row is None:
            return {}
        data: dict[str, Any] = self.decode(row.session_data)
        if refill:
            try:
                age = await self.aget_expiry_age(expiry=row.expire_date)
                await self._ops.aset(await self.acache_key(), data, age)
            except Exception as exc:
                _warn("cache refill", exc)
        return data

    async def aexists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            if await self._ops.ahas_key(self.cache_key_prefix + session_key):
                return True
        except Exception as exc:
            _warn("read", exc)
        return self._write_through and await super().aexists(session_key)

    async def acreate(self) -> None:
        for _ in range(CREATE_ATTEMPTS):
            self._session_key = await self._aget_new_session_key()
            try:
                await self.asave(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError(_CREATE_FAILED)

    async def asave(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return await self.acreate()
        key = await self.acache_key()
        if self._write_through:
            await super().asave(must_create)
            try:
                data = await self._aget_session()
                await self._ops.aset(key, data, await self.aget_expiry_age())
            except Exception:
                django_log.exception("Error saving to cache (%s)", self._cache)
            return
        data = await self._aget_session(no_load=must_create)
        if must_create:
            if not await self._ops.aadd(key, data, await self.aget_expiry_age()):
                raise CreateError
            return
        if self._unreadable:
            _warn("save (data unread)", RuntimeError("the cache was unreachable at load"))
            return
        try:
            present = await self._ops.ahas_key(key)
            if present:
                await self._ops.aset(key, data, await self.aget_expiry_age())
        except Exception as exc:
            _warn("save", exc)
            return
        if not present:
            raise UpdateError

    async def adelete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        if self._write_through:
            await super().adelete(session_key)
        await self._ops.adelete(self.cache_key_prefix + session_key)

    @classmethod
    async def aclear_expired(cls) -> None:
        if _write_through(cls):
            await super().aclear_expired()
