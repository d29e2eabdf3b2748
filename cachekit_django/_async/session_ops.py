"""The session store's methods, written once as async code (``_sync/session_ops.py`` is
generated): each side calls the cache's and (writing through) the database's methods of its
own kind, so the async ones never hop to a thread.

Every cache call returns the engine's answer, so an unreachable Redis is never mistaken for an
unknown session: reads ask Redis past this process's copy (``local=False``: a logout in another
process is seen at once) and say HIT, MISS or UNAVAILABLE; ``insert`` says stored, taken or
unavailable; ``write`` and ``invalidate`` say whether Redis was reached.
"""

# Django's cache API takes `timeout` (a TTL, not a deadline): ASYNC109 does not apply. RUF100:
# the generated sync twin has no async function for ASYNC109 to flag.
# ruff: noqa: ASYNC109, RUF100

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from cachekit_core import CacheUnavailable, ReadStatus

from .._session_core import (
    CREATE_ATTEMPTS,
    CREATE_FAILED,
    UNREACHABLE,
    PlainCacheCore,
    SessionCore,
    warn,
)


class AsyncSessionOps(SessionCore):
    async def aload(self) -> dict[str, Any]:
        self._unreadable = False
        status, data = await self._aread(await self._acache_key())
        if status is ReadStatus.HIT:
            session: dict[str, Any] = data
            return session
        if self._write_through:  # the database answers, whether the cache missed or failed
            return await self._aload_db(refill=status is ReadStatus.MISS)
        if status is ReadStatus.UNAVAILABLE:
            self._unreadable = True  # keep the key: the session is back with the cache
        else:
            self._session_key = None  # an unknown key is never reused (session fixation)
        return {}

    async def _aload_db(self, *, refill: bool) -> dict[str, Any]:
        row = await self._aget_session_from_db()  # drops the key itself when there is no row
        if row is None:
            return {}
        data: dict[str, Any] = self.decode(row.session_data)
        if refill:
            age = await self.aget_expiry_age(expiry=row.expire_date)
            stored, failure = await self._awrite(await self._acache_key(), data, age)
            if not stored:
                warn("cache refill", failure)
        return data

    async def aexists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        status, _ = await self._aread(self.cache_key_prefix + session_key)
        if status is ReadStatus.HIT:
            return True
        return self._write_through and await super().aexists(session_key)

    async def acreate(self) -> None:
        for _ in range(CREATE_ATTEMPTS):
            self._session_key = await self._aget_new_session_key()
            try:
                await self.asave(must_create=True)
            except CreateError:
                continue  # the key is taken: draw another
            self.modified = True
            return
        raise RuntimeError(CREATE_FAILED)

    async def asave(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return await self.acreate()
        key = await self._acache_key()
        if self._write_through:
            await super().asave(must_create)  # the database decides CreateError / UpdateError
            data = await self._aget_session()
            stored, failure = await self._awrite(key, data, await self.aget_expiry_age())
            if not stored:
                # The database has the new data; the cache may still hold the old copy. Drop
                # it (queued and replayed once Redis is back if it cannot go now), so reads
                # fall through to the database instead of serving it.
                self._write_failed(failure)
                with contextlib.suppress(Exception):
                    await self._ops.ainvalidate([key], record=True)
            return
        data = await self._aget_session(no_load=must_create)
        if must_create:
            created = await self._ops.ainsert(key, data, await self.aget_expiry_age(), record=True)
            if created is None:
                # Whether the key is taken is unknown, and no session can exist without the
                # cache: fail rather than hand out a key that was never stored.
                raise CacheUnavailable(f"{UNREACHABLE}: no session was created")
            if not created:
                raise CreateError
            return
        if self._unreadable:
            warn("save (data unread)", RuntimeError("the cache was unreachable at load"))
            return
        # Only an existing session is updated (SET XX, one round trip): a concurrent logout
        # or rotation must not be undone by this late save.
        try:
            replaced = await self._ops.areplace(
                key, data, await self.aget_expiry_age(), record=True
            )
        except Exception as exc:
            self._write_failed(exc)
            return
        if replaced is None:
            self._write_failed(None)
        elif not replaced:
            raise UpdateError

    async def adelete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        if self._write_through:
            await super().adelete(session_key)
        if not await self._ops.ainvalidate([self.cache_key_prefix + session_key], record=True):
            # A logout that silently left the session usable would be worse than an error page.
            raise CacheUnavailable(f"{UNREACHABLE}: the session was not deleted")

    @classmethod
    async def aclear_expired(cls) -> None:
        if cls._uses_database():  # cache entries expire by TTL on their own
            await super().aclear_expired()

    async def _aread(self, key: str) -> tuple[ReadStatus, Any]:
        """The cache's answer for ``key``, Redis asked past this process's copy; a cache that
        raises (a plain Django cache may, and so may unpickling) answers UNAVAILABLE."""
        try:
            status, data = await self._ops.aread(key, local=False, record=True)
        except Exception as exc:
            warn("read", exc)
            return ReadStatus.UNAVAILABLE, None
        if status is ReadStatus.UNAVAILABLE:
            warn("read")
        return status, data

    async def _awrite(
        self, key: str, data: dict[str, Any], timeout: int
    ) -> tuple[bool, BaseException | None]:
        """Store ``data``: whether it reached the cache's shared store, and what was raised
        when it did not because the cache raised (a plain Django cache may; pickling may)."""
        try:
            return await self._ops.awrite(key, data, timeout, record=True), None
        except Exception as exc:
            return False, exc


class AsyncPlainCacheOps(PlainCacheCore):
    """``CachekitCache``'s answers from a plain Django cache (see ``PlainCacheCore``)."""

    async def aread(
        self, key: str, version: int | None = None, *, local: bool = True, record: bool = False
    ) -> tuple[ReadStatus, Any]:
        value = await self.cache.aget(key, version=version)
        return (ReadStatus.MISS, None) if value is None else (ReadStatus.HIT, value)

    async def awrite(
        self,
        key: str,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        record: bool = False,
    ) -> bool:
        await self.cache.aset(key, value, timeout, version)
        return True

    async def ainsert(
        self,
        key: str,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        record: bool = False,
    ) -> bool | None:
        return await self.cache.aadd(key, value, timeout, version)

    async def areplace(
        self,
        key: str,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        record: bool = False,
    ) -> bool | None:
        # Django's cache API has no SET XX: check, then set (a narrow race, as Django's own
        # cache session engine has).
        if not await self.cache.ahas_key(key, version):
            return False
        await self.cache.aset(key, value, timeout, version)
        return True

    async def ainvalidate(
        self, keys: Iterable[str], version: int | None = None, *, record: bool = False
    ) -> bool:
        await self.cache.adelete_many(list(keys), version)
        return True
