"""Server-side sessions: a drop-in for ``starlette.middleware.sessions.SessionMiddleware``.

Starlette keeps the whole session in a signed cookie; this middleware keeps it in a cachekit
``Cache`` and puts only a random 256-bit session id, HMAC-signed with ``secret_key``, in the
cookie. ``request.session`` and the cookie attributes behave as Starlette's.

**What is signed.** The cookie's id, with ``secret_key``. The stored session data too, always,
whether or not the ``Cache`` was built with a ``secret_key`` of its own: it is stored as
``cks1.<expiry>.<mac>.<json>``, the MAC an HMAC-SHA256 with a key derived from this
middleware's ``secret_key`` (for this use only) over the cache namespace, the full key, the
expiry and the JSON. So someone who can write to Redis cannot edit ``"is_admin": true`` into a
session, move a session to another id, prefix or namespace, or keep one alive past its expiry
by removing the Redis TTL. A stored session that does not verify reads as no session, and is
counted as corrupt in ``cache.stats()`` and logged (at most once per 10 s). Redis writers *can*
still delete sessions, and put back a copy of a session they saw earlier under its own id
until that copy's expiry (a logout is a deletion): keep Redis private (ACLs, TLS). Sessions
stored by earlier versions (plain JSON) do not verify: users log in once more after upgrading.

**Session ids change when privileges do** (no session fixation). A new session always gets a
new id (an id seen before, valid or not, is never reused). An existing session moves to a new
id when one of the ``rotate_on`` keys (by default ``user``, ``user_id``, ``username``,
``auth``, ``token``) is set, changed or removed, when the session was cleared (``clear()``)
and refilled, and when ``request.session.rotate()`` is called. The old id stops working at
once: its stored data is replaced by a tombstone and deleted, so a request still carrying it
gets an empty session. A session emptied by the app is deleted and its cookie expired.

**A save never resurrects a session.** Updates of an existing session are ``SET XX``
(``Cache.areplace``): if the session was deleted (a logout) or moved (a rotation) while the
request was in flight, nothing is written and no cookie is sent. New ids are ``SET NX``
(``Cache.ainsert``). A rotation inserts the new id first and then turns the old one into a
tombstone with ``SET XX``; if the old one is already gone, the new one is removed again and
the response carries no cookie. Among requests of a live session, the last one to finish
wins, as with Starlette's cookie sessions.

**Where sessions live.** In ``cache.records``: under their own prefix, never in any process's
in-process layer (every read asks Redis, so a logout elsewhere is seen at once), and never
touched by the data cache's ``clear()``, by an overflow of its lost invalidations, or by their
replay: a burst of junk page writes during an outage cannot delete them.

**Outages.** A transient cache outage never logs a user out: the request sees an empty session
(read-only), ordinary changes are not saved (logged), nothing is
deleted and the cookie is left alone, so the session is back once the cache is. But a change
that matters for security fails loudly: ending the session (``clear()``, or removing a
``rotate_on`` key, even one the request could not see) or moving it to a new id (a
``rotate_on`` key set or changed, ``rotate()``) that cannot reach the store raises
``CacheUnavailable`` when the response starts, so the client gets a 500 instead of a page
saying "logged out" (or "logged in") that is not true, and can retry; a failed move leaves the
old session as it was. (Fail loudly rather than only expire the cookie: a stolen or planted
copy of the cookie is not expired by that, and no revocation can be recorded in a store that
cannot be reached, so only the client can be told the truth.) A logout that could not
be carried out is not forgotten either: the deletion is queued by the engine (replayed once
Redis answers), and this process refuses the id from then on and keeps retrying the deletion
(at most once a second, on later requests) until Redis confirms it, so after the outage the
old cookie is not logged in, here at once and in other processes as soon as the deletion
lands. (An id refused only in memory does not survive a restart of this process during the
outage; the engine's replay does not either: the 500 is what tells the user to log out again.)

Reading the session sets ``scope["cachekit.session_accessed"]`` so an HTTP cache in front of the
app can vary on the cookie, and ``Vary: Cookie`` is added as Starlette does. The stored data
expires ``max_age`` seconds after the last write (14 days when ``max_age`` is None, which only
makes the cookie a browser-session cookie).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from starlette.datastructures import MutableHeaders, Secret
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cachekit_core import Cache, CacheError, CacheUnavailable, ConfigurationError, ReadStatus
from cachekit_core.throttle import Throttle

__all__ = ["DEFAULT_ROTATE_ON", "SESSION_ACCESSED", "Session", "SessionMiddleware"]

log = logging.getLogger("cachekit.fastapi.sessions")

SESSION_ACCESSED = "cachekit.session_accessed"
"""Scope key set to True once the request's session has been read or written."""

DEFAULT_ROTATE_ON: Final = ("user", "user_id", "username", "auth", "token")
"""The session keys that mean "logged in": setting, changing or removing one moves the
session to a new id."""

_NO_MAX_AGE_TTL = 14 * 24 * 3600
_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_EXPIRED = "expires=Thu, 01 Jan 1970 00:00:00 GMT; "
_FORMAT = "cks1."  # version prefix of a stored (signed) session
_SEALED = re.compile(r"cks1\.([0-9]{1,15})\.([A-Za-z0-9_-]{43})\.(.*)", re.DOTALL)
_TOMBSTONE = "cks1.moved"  # what an id holds between a rotation and its deletion
_TOMBSTONE_TTL = 60.0
_MAX_REVOKED = 10_000  # ids refused in memory while their deletion waits for Redis
_MISSING = object()


class Session(dict[str, Any]):
    """``request.session``: a dict that records whether it was read and whether it changed
    (and which keys were written or removed, and whether it was cleared)."""

    accessed = False
    modified = False
    _rotate = False
    _cleared = False
    _scope: Scope | None = None
    _written: frozenset[str] = frozenset()

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

    @property
    def cleared(self) -> bool:
        """Whether ``clear()`` was called (a logout, or a session started afresh)."""
        return self._cleared

    @property
    def written_keys(self) -> frozenset[str]:
        """The top-level keys this request set or removed (or tried to remove)."""
        return self._written

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
        """Move the session to a new id with this response (logins do it by themselves: see
        ``SessionMiddleware(rotate_on=...)``)."""
        self._rotate = True
        self.mark_modified()

    def _wrote(self, keys: Iterable[Any]) -> None:
        self._written = self._written.union(k for k in keys if isinstance(k, str))

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

    # Writes. A pop or setdefault that changes nothing is not a write (as in Starlette), but
    # the key is remembered: ``pop("user", None)`` on a session the store could not deliver
    # is still a logout.
    def __setitem__(self, key: str, value: Any) -> None:
        self.mark_modified()
        self._wrote((key,))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.mark_modified()
        self._wrote((key,))
        super().__delitem__(key)

    def clear(self) -> None:
        self.mark_modified()
        self._cleared = True
        self._wrote(dict.keys(self))
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        self._wrote((key,))
        if dict.__contains__(self, key):
            self.mark_modified()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self.mark_modified()
        self._wrote((item[0],))
        return item

    def setdefault(self, key: str, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            self.mark_accessed()
        else:
            self.mark_modified()
            self._wrote((key,))
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.mark_modified()
        items = dict(*args, **kwargs)
        self._wrote(items)
        super().update(items)

    def __ior__(self, other: Any) -> Session:  # type: ignore[override,misc]
        self.mark_modified()
        items = dict(other)
        self._wrote(items)
        super().update(items)
        return self


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What a request started from: the stored JSON and its data (None: no session), and
    whether the store answered (False: nothing was read, and nothing may be written)."""

    encoded: str | None = None
    data: dict[str, Any] | None = None
    reachable: bool = True


_NOTHING = _Loaded()


class SessionMiddleware:
    """Keep ``request.session`` in ``cache``; the cookie carries only a signed session id.

    Takes Starlette's arguments (``secret_key``, ``session_cookie``, ``max_age``, ``path``,
    ``same_site``, ``https_only``, ``domain``, ``partitioned``) plus ``cache``, an optional
    ``key_prefix`` for the cache keys, and ``rotate_on``: the session keys whose change moves
    the session to a new id (see the module docstring). Session data is stored as JSON, as
    Starlette does, signed with a key derived from ``secret_key``.
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
        rotate_on: Iterable[str] = DEFAULT_ROTATE_ON,
    ) -> None:
        secret = str(secret_key)
        if not secret:
            raise ConfigurationError("SessionMiddleware(secret_key=...) must not be empty")
        keys = () if isinstance(rotate_on, str) else tuple(rotate_on)
        if isinstance(rotate_on, str) or not all(isinstance(k, str) for k in keys):
            # One string would be taken for its letters: ask for a tuple.
            raise ConfigurationError(
                "SessionMiddleware(rotate_on=...) takes a tuple of session keys, "
                "e.g. ('user', 'user_id')"
            )
        self.app = app
        self.cache = cache
        self.session_cookie = session_cookie
        self.max_age = max_age
        self.path = path
        self.key_prefix = key_prefix
        self.rotate_on = frozenset(keys)
        self._secret = secret.encode()
        # The data key is derived (one-way, for this use only): a MAC over session data means
        # nothing anywhere else the secret is used, and the cookie's MAC nothing here.
        self._data_key = hmac.new(
            self._secret, b"cachekit.session-data-key.v1", hashlib.sha256
        ).digest()
        self._ttl = max_age if max_age is not None else _NO_MAX_AGE_TTL
        flags = f"httponly; samesite={same_site}"
        if https_only:
            flags += "; secure"
        if domain is not None:
            flags += f"; domain={domain}"
        if partitioned:
            flags += "; partitioned"
        self._flags = flags
        # Ids whose logout could not reach the store: refused here until Redis confirms their
        # deletion (id -> monotonic deadline, after which the data has expired anyway).
        self._revoked: dict[str, float] = {}
        self._retry = Throttle(1.0)
        self.rejected = 0
        """Stored sessions whose signature did not verify (also counted as corrupt)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self._revoked:
            await self._retry_revoked()
        sid = self._verify(HTTPConnection(scope).cookies.get(self.session_cookie))
        loaded = _NOTHING
        if sid is not None:
            loaded = await self._load(sid) if sid not in self._revoked else await self._recheck(sid)
        session = Session(loaded.data or {})
        session.bind_scope(scope)
        scope["session"] = session

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                current = scope.get("session")
                if not isinstance(current, Session):  # replaced by the app: a new session
                    replaced = Session()
                    replaced.clear()
                    replaced.update(current or {})
                    replaced.bind_scope(scope)
                    current = replaced
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                if current.accessed:
                    _add_vary_cookie(headers)
                # Raises CacheUnavailable when a logout or a login cannot reach the store.
                cookie = await self._save(current, sid, loaded)
                if cookie is not None:
                    headers.append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_wrapper)

    # -- loading -----------------------------------------------------------------------------
    async def _recheck(self, sid: str) -> _Loaded:
        """A session whose logout has not reached the store yet: never loaded. Deliver the
        deletion now if the store answers; until then the request sees the store as away."""
        try:
            delivered = await self.cache.records.ainvalidate([self.key_prefix + sid])
        except CacheError:
            delivered = False
        if not delivered:
            return _Loaded(reachable=False)
        self._revoked.pop(sid, None)
        return _NOTHING

    async def _load(self, sid: str) -> _Loaded:
        try:
            read = await self.cache.records.aread(self.key_prefix + sid)
        except CacheError as exc:  # a cache built with raise_on_error=True
            log.warning("cachekit: session store unavailable, serving an empty session: %s", exc)
            return _Loaded(reachable=False)
        # The engine fails open, but an empty session here would log the user out: the read
        # tells "absent" (MISS) from "could not ask" (UNAVAILABLE: read-only, see _save).
        reachable = read.status is not ReadStatus.UNAVAILABLE
        raw = read.value if read.is_fresh(self.cache.clock()) else None
        if raw is None:
            if not reachable:
                log.warning("cachekit: session store unavailable, serving an empty session")
            return _Loaded(reachable=reachable)
        encoded = self._unseal(sid, raw)
        if encoded is not None:
            try:
                data = json.loads(encoded)
            except ValueError:
                data = None
            if isinstance(data, dict):
                return _Loaded(encoded, data, reachable)
        return _Loaded(reachable=reachable)  # absent, expired or not ours: start afresh

    def _seal(self, sid: str, encoded: str) -> str:
        expires = int(self.cache.clock() + self._ttl) + 1
        return f"{_FORMAT}{expires}.{self._mac(sid, expires, encoded)}.{encoded}"

    def _unseal(self, sid: str, raw: object) -> str | None:
        """The JSON of a stored session we signed for ``sid`` here, or None."""
        if raw == _TOMBSTONE:
            return None  # moved to a new id
        sealed = _SEALED.fullmatch(raw) if isinstance(raw, str) else None
        if sealed is not None:
            expires, mac, encoded = int(sealed[1]), sealed[2], sealed[3]
            if hmac.compare_digest(mac.encode(), self._mac(sid, expires, encoded).encode()):
                return encoded if self.cache.clock() < expires else None
        self.rejected += 1
        self.cache.report_corrupt(
            f"stored session under {self.key_prefix!r} fails its signature check (forged, "
            "copied from another key, or written by another secret_key)"
        )
        return None

    def _mac(self, sid: str, expires: int, encoded: str) -> str:
        where = json.dumps([self.cache.namespace, self.key_prefix + sid, expires])
        data = encoded.encode("utf-8", "surrogatepass")  # a forged value may hold anything
        message = b"cachekit.session-data.v1\x00" + where.encode() + b"\x00" + data
        mac = hmac.new(self._data_key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    # -- saving ------------------------------------------------------------------------------
    async def _save(self, session: Session, sid: str | None, loaded: _Loaded) -> str | None:
        """Persist the session's changes; return the Set-Cookie value to send, if any.
        Raises CacheUnavailable when a logout or a change of id cannot be carried out."""
        if not (session.accessed or session.modified or session.written_keys):
            return None  # never touched: nothing can have changed
        data = dict.copy(session)  # a plain dict: serializing must not count as a read
        encoded = json.dumps(data, separators=(",", ":"))
        sensitive = self._sensitive(session, json.loads(encoded), loaded)
        if not loaded.reachable:
            # The store did not deliver the session (the request saw nothing, or this
            # process's copy): writing now could overwrite it with that. But a logout must
            # still end it: emptied by clear() or by removing keys (even ones not seen).
            if sid is not None and not data and (session.cleared or session.written_keys):
                await self._destroy(sid, sensitive)  # raises if a logout cannot be done
                return self._expired_cookie()
            if sensitive:
                raise CacheUnavailable(
                    "the session store is unreachable: the session cannot change its user now"
                )
            if session.modified:
                log.warning("cachekit: session store unavailable, session changes not saved")
            return None
        if not data:
            if not session.modified or sid is None or loaded.data is None:
                return None  # nothing stored under this id, or nothing changed
            await self._destroy(sid, sensitive)  # a logout: raises if it cannot be done
            return self._expired_cookie()
        if not session.modified and encoded == loaded.encoded:
            return None
        if self._ttl <= 0:  # max_age <= 0: the cookie is born expired, so store nothing
            return self._cookie(secrets.token_urlsafe(32))
        if sid is None or loaded.data is None:
            return await self._create(encoded, sensitive)
        if sensitive:
            return await self._rotate(sid, encoded)
        return await self._update(sid, encoded)

    def _sensitive(self, session: Session, current: dict[str, Any], loaded: _Loaded) -> bool:
        """Whether this change moves the session to a new id (and must fail loudly)."""
        if session.rotation_requested or session.cleared:
            return True
        # From the stored JSON: the app may have changed nested values of loaded.data.
        before = json.loads(loaded.encoded) if loaded.encoded is not None else {}
        for key in self.rotate_on:
            if before.get(key, _MISSING) != current.get(key, _MISSING):
                return True
        # What the store held is unknown: a login or logout key touched at all counts.
        return not loaded.reachable and bool(session.written_keys & self.rotate_on)

    async def _create(self, encoded: str, sensitive: bool) -> str | None:
        """A new session, under a new id (SET NX)."""
        sid = secrets.token_urlsafe(32)  # a new session never reuses an old id
        try:
            stored = await self.cache.records.ainsert(
                self.key_prefix + sid, self._seal(sid, encoded), ttl=self._ttl
            )
        except CacheError:
            stored = None
        if stored:
            return self._cookie(sid)
        if sensitive:
            raise CacheUnavailable("the session store is unreachable: the session was not saved")
        log.warning("cachekit: session store unavailable, session changes not saved")
        return None

    async def _update(self, sid: str, encoded: str) -> str | None:
        """An existing session, kept only if it still exists (SET XX)."""
        try:
            replaced = await self.cache.records.areplace(
                self.key_prefix + sid, self._seal(sid, encoded), ttl=self._ttl
            )
        except CacheError:
            replaced = None
        if replaced:
            return self._cookie(sid)
        if replaced is None:
            log.warning("cachekit: session store unavailable, session changes not saved")
        else:  # deleted or rotated meanwhile: writing it back would undo a logout
            log.info("cachekit: the session ended while this request ran; changes not saved")
        return None

    async def _rotate(self, old: str, encoded: str) -> str | None:
        """Move the session to a new id: insert the new one, tombstone the old one if it
        still exists (SET XX), delete the old one. Raises CacheUnavailable on failure (the
        old session is then left as it was, or already gone)."""
        sid = secrets.token_urlsafe(32)
        try:
            stored = await self.cache.records.ainsert(
                self.key_prefix + sid, self._seal(sid, encoded), ttl=self._ttl
            )
        except CacheError as exc:
            raise CacheUnavailable(f"the session could not move to a new id: {exc}") from exc
        if not stored:
            raise CacheUnavailable("the session store is unreachable: the session was not saved")
        try:
            moved = await self.cache.records.areplace(
                self.key_prefix + old, _TOMBSTONE, ttl=_TOMBSTONE_TTL
            )
        except CacheError:
            moved = None
        if not moved:
            await self._discard(sid)  # the new id was never sent: remove it
            if moved is None:
                raise CacheUnavailable(
                    "the session store is unreachable: the session was not saved"
                )
            log.info("cachekit: the session ended while this request ran; changes not saved")
            return None  # logged out meanwhile: the session must stay gone
        # The old id already reads as no session; deleting it makes a late save fail too.
        try:
            delivered = await self.cache.records.ainvalidate([self.key_prefix + old])
        except CacheError:
            delivered = False
        if not delivered:
            self._revoke(old)
            log.warning("cachekit: old session id not deleted yet (queued): it reads as empty")
        return self._cookie(sid)

    async def _destroy(self, sid: str, sensitive: bool) -> None:
        """Delete the stored session. If the store cannot confirm it, the deletion is queued,
        this process refuses the id from now on, and a sensitive one (a logout) raises."""
        error: CacheError | None = None
        try:
            delivered = await self.cache.records.ainvalidate([self.key_prefix + sid])
        except CacheError as exc:  # raise_on_error=True: the engine queued it all the same
            delivered, error = False, exc
        if delivered:
            self._revoked.pop(sid, None)
            return
        self._revoke(sid)
        if sensitive:
            raise CacheUnavailable(
                "the session store is unreachable: the session could not be ended (logout); "
                "its deletion is queued"
            ) from error
        log.warning("cachekit: session store unavailable, session deleted when it is back")

    async def _discard(self, sid: str) -> None:
        try:
            if not await self.cache.records.ainvalidate([self.key_prefix + sid]):
                self._revoke(sid)
        except CacheError:
            self._revoke(sid)

    def _revoke(self, sid: str) -> None:
        revoked = self._revoked
        revoked.pop(sid, None)
        while len(revoked) >= _MAX_REVOKED:  # the oldest: its deletion is still queued
            del revoked[next(iter(revoked))]
        revoked[sid] = time.monotonic() + self._ttl

    async def _retry_revoked(self) -> None:
        """Retry the deletions a logout could not deliver (at most once a second)."""
        now = time.monotonic()
        revoked = self._revoked
        for sid in [s for s, deadline in revoked.items() if deadline <= now]:
            del revoked[sid]  # expired in the store by now
        if not revoked or not self._retry.ready():
            return
        sids = list(revoked)
        try:
            delivered = await self.cache.records.ainvalidate([self.key_prefix + s for s in sids])
        except CacheError:
            return
        if delivered:
            for sid in sids:
                revoked.pop(sid, None)
            log.info("cachekit: %d session(s) ended during an outage are deleted now", len(sids))

    # -- the cookie --------------------------------------------------------------------------
    def _expired_cookie(self) -> str:
        return f"{self.session_cookie}=null; path={self.path}; {_EXPIRED}{self._flags}"

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
