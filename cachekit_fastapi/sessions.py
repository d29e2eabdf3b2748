"""Server-side sessions: a drop-in for ``starlette.middleware.sessions.SessionMiddleware``.

Starlette keeps the whole session in a signed cookie; this middleware keeps it in a cachekit
``Cache`` and puts only a random session id, HMAC-signed with ``secret_key``, in the cookie.
``request.session`` and the cookie attributes behave as Starlette's. On the server side:

- the stored data expires ``max_age`` seconds after the last write (14 days when ``max_age`` is
  None, which only makes the cookie a browser-session cookie);
- a new session always gets a new id (an id seen before, valid or not, is never reused);
  ``request.session.rotate()`` issues a new id for an existing session, e.g. after a login;
- a transient cache outage never logs a user out: the request sees an empty session, nothing
  is written or deleted and the cookie is left alone, so the session is back once the cache is;
- reading the session sets ``scope["cachekit.session_accessed"]`` so an HTTP cache in front of
  the app can vary on the cookie, and ``Vary: Cookie`` is added as Starlette does.

Concurrent requests of one user each save the whole session at response start, so the last
one to finish wins, exactly as with Starlette's cookie sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Iterator
from typing import Any, Literal

from starlette.datastructures import MutableHeaders, Secret
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cachekit_core import Cache, CacheError, ConfigurationError, ReadStatus

__all__ = ["SESSION_ACCESSED", "Session", "SessionMiddleware"]

log = logging.getLogger("cachekit.fastapi.sessions")

SESSION_ACCESSED = "cachekit.session_accessed"
"""Scope key set to True once the request's session has been read or written."""

_NO_MAX_AGE_TTL = 14 * 24 * 3600
_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_EXPIRED = "expires=Thu, 01 Jan 1970 00:00:00 GMT; "


class Session(dict[str, Any]):
    """``request.session``: a dict that records whether it was read and whether it changed."""

    accessed = False
    modified = False
    _rotate = False
    _scope: Scope | None = None

    def bind_scope(self, scope: Scope) -> None:
        """Record reads in ``scope`` too (``scope["cachekit.session_accessed"]``), where an
        HTTP cache in front of the app looks (the middleware binds the request's scope)."""
        self._scope = scope
        if self.accessed:
            scope[SESSION_ACCESSED] = True

    @property
    def rotation_requested(self) -> bool:
        """Whether ``rotate()`` was called: the session moves to a new id when saved."""
        return self._rotate

    def mark_accessed(self) -> None:
        """Record that the response depends on the session (Starlette's ``request.session``
        calls this)."""
        if not self.accessed:
            self.accessed = True
            if self._scope is not None:
                self._scope[SESSION_ACCESSED] = True

    def mark_modified(self) -> None:
        """Record a change, so the session is saved with the response."""
        self.mark_accessed()
        self.modified = True

    def rotate(self) -> None:
        """Move the session to a new id with this response (call it after a login)."""
        self._rotate = True
        self.mark_modified()

    # Reads: any of them means the response may depend on who is asking.
    def __getitem__(self, key: str) -> Any:
        self.mark_accessed()
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.mark_accessed()
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.mark_accessed()
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self.mark_accessed()
        return super().__iter__()

    def __len__(self) -> int:
        self.mark_accessed()
        return super().__len__()

    # Writes. A pop or setdefault that changes nothing is not a write (as in Starlette).
    def __setitem__(self, key: str, value: Any) -> None:
        self.mark_modified()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.mark_modified()
        super().__delitem__(key)

    def clear(self) -> None:
        self.mark_modified()
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        if dict.__contains__(self, key):
            self.mark_modified()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self.mark_modified()
        return item

    def setdefault(self, key: str, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            self.mark_accessed()
        else:
            self.mark_modified()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.mark_modified()
        super().update(*args, **kwargs)

    def __ior__(self, other: Any) -> Session:  # type: ignore[override,misc]
        self.mark_modified()
        super().update(other)
        return self


class SessionMiddleware:
    """Keep ``request.session`` in ``cache``; the cookie carries only a signed session id.

    Takes Starlette's arguments (``secret_key``, ``session_cookie``, ``max_age``, ``path``,
    ``same_site``, ``https_only``, ``domain``, ``partitioned``) plus ``cache`` and an optional
    ``key_prefix`` for the cache keys. Session data is stored as JSON, as Starlette does.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str | Secret,
        session_cookie: str = "session",
        max_age: int | None = 14 * 24 * 3600,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        cache: Cache,
        key_prefix: str = "session:",
    ) -> None:
        secret = str(secret_key)
        if not secret:
            raise ConfigurationError("SessionMiddleware(secret_key=...) must not be empty")
        self.app = app
        self.cache = cache
        self.session_cookie = session_cookie
        self.max_age = max_age
        self.path = path
        self.key_prefix = key_prefix
        self._secret = secret.encode()
        self._ttl = max_age if max_age is not None else _NO_MAX_AGE_TTL
        flags = f"httponly; samesite={same_site}"
        if https_only:
            flags += "; secure"
        if domain is not None:
            flags += f"; domain={domain}"
        if partitioned:
            flags += "; partitioned"
        self._flags = flags

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        sid = self._verify(HTTPConnection(scope).cookies.get(self.session_cookie))
        loaded: str | None = None  # the stored JSON this request started from
        reachable = True
        session = Session()
        if sid is not None:
            loaded, data, reachable = await self._load(sid)
            session = Session(data)
        session.bind_scope(scope)
        scope["session"] = session

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                current = scope.get("session")
                if not isinstance(current, Session):  # replaced by the app: treat as written
                    current = Session(current or {})
                    current.bind_scope(scope)
                    current.mark_modified()
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                if current.accessed:
                    _add_vary_cookie(headers)
                cookie = await self._save(current, sid, loaded, reachable)
                if cookie is not None:
                    headers.append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_wrapper)

    async def _load(self, sid: str) -> tuple[str | None, dict[str, Any], bool]:
        """Return the stored JSON (None if absent), its data, and whether the cache answered."""
        try:
            read = await self.cache.aread(self.key_prefix + sid)
        except CacheError as exc:  # a cache built with raise_on_error=True
            log.warning("cachekit: session store unavailable, serving an empty session: %s", exc)
            return None, {}, False
        # The engine fails open, but an empty session here would log the user out: the read
        # tells "absent" (MISS) from "could not ask" (UNAVAILABLE, maybe with this process's
        # copy, which is served read-only: see _save).
        reachable = read.status is not ReadStatus.UNAVAILABLE
        raw = read.value if read.is_fresh(self.cache.clock()) else None
        if raw is None and not reachable:
            log.warning("cachekit: session store unavailable, serving an empty session")
            return None, {}, False
        if isinstance(raw, str):
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            if isinstance(data, dict):
                return raw, data, reachable
        return None, {}, reachable  # absent, or not a session we wrote: start afresh

    async def _save(
        self, session: Session, sid: str | None, loaded: str | None, reachable: bool
    ) -> str | None:
        """Persist the session's changes; return the Set-Cookie value to send, if any."""
        if not (session.accessed or session.modified):
            return None  # never touched: nothing can have changed
        if not reachable:
            # The stored session may still exist: writing or deleting now could destroy it.
            if session.modified:
                log.warning("cachekit: session store unavailable, session changes not saved")
            return None
        data = dict.copy(session)  # a plain dict: serializing must not count as a read
        if not data:
            if loaded is None or sid is None:
                return None  # nothing stored and nothing to store
            await self._delete(sid)
            return f"{self.session_cookie}=null; path={self.path}; {_EXPIRED}{self._flags}"
        encoded = json.dumps(data, separators=(",", ":"))
        if not session.modified and encoded == loaded:
            return None
        new_sid = sid
        if sid is None or loaded is None or session.rotation_requested:
            new_sid = secrets.token_urlsafe(32)  # a new session never reuses an old id
        assert new_sid is not None
        if self._ttl > 0:  # max_age <= 0: the cookie is born expired, so store nothing
            stored = False
            # The engine replays a failed write as a delete once Redis is back (so no process
            # keeps the old value): for a session that is a logout. Write only on a closed
            # circuit; then only a write that is itself the first failure can still lose it.
            if self.cache.reachable():
                try:
                    # True only if the shared layer has it (memory-only: if stored).
                    stored = await self.cache.awrite(
                        {self.key_prefix + new_sid: encoded}, ttl=self._ttl
                    )
                except CacheError:
                    stored = False
            if not stored:  # leave the cookie alone: it still names what was stored before
                log.warning("cachekit: session store unavailable, session changes not saved")
                return None
        if new_sid != sid and sid is not None and loaded is not None:
            await self._delete(sid)  # rotated: the old id must stop working
        return self._cookie(new_sid)

    async def _delete(self, sid: str) -> None:
        try:
            delivered = await self.cache.ainvalidate([self.key_prefix + sid])
        except CacheError as exc:
            log.warning("cachekit: session could not be deleted: %s", exc)
            return
        if not delivered:  # the engine deletes it once Redis is back
            log.warning("cachekit: session store unavailable, session deleted when it is back")

    def _cookie(self, sid: str) -> str:
        max_age = f"Max-Age={self.max_age}; " if self.max_age is not None else ""
        value = f"{sid}.{self._sign(sid)}"
        return f"{self.session_cookie}={value}; path={self.path}; {max_age}{self._flags}"

    def _sign(self, sid: str) -> str:
        # Domain-separated, so a signature made here means nothing to other users of the key.
        mac = hmac.new(self._secret, b"cachekit.session-id:" + sid.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def _verify(self, cookie: str | None) -> str | None:
        """The session id in a cookie we signed, or None for a missing or forged cookie."""
        if not cookie:
            return None
        sid, _, signature = cookie.partition(".")
        if not _ID.fullmatch(sid):
            return None
        # Bytes: compare_digest rejects non-ASCII str, and a cookie may hold any latin-1 text.
        if not hmac.compare_digest(signature.encode(), self._sign(sid).encode()):
            return None
        return sid


def _add_vary_cookie(headers: MutableHeaders) -> None:
    for value in headers.getlist("vary"):
        for token in value.split(","):
            if token.strip().lower() in ("cookie", "*"):
                return
    headers.add_vary_header("Cookie")
