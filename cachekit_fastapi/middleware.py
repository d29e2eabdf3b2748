"""``CacheMiddleware``: a pure ASGI HTTP cache in front of any ASGI app.

This module only translates: an ASGI scope becomes a core ``Request``, the app's
``http.response.start`` + body become a core ``Response``, and what the core returns goes back
out as ASGI messages. Every caching decision (bypass, storability, keys, ETag, 304, X-Cache,
stale windows) is made by ``cachekit_core.httpcache.HttpCache``.

Flow of one http request:

1. The request is matched against the app's routes (``routes.match_route``, as the router
   will). A route that is not cached (no ``kit.cache``, and not shared-cache mode; no match)
   passes through untouched: no lookup, no I/O, no header. An unsafe method passes through
   too unless the URL's GET route is cached (its stored page is then invalidated, R4).
2. A route whose dependency tree is empty apart from path and query parameters (``fast``):
   ``alookup`` before routing; a HIT or STALE is sent at once, the app never runs.
3. Any other cached route: no lookup yet. The ``PendingLookup`` is published in a context
   variable (and ``scope["cachekit"]``) and the app runs; the ``kit.cache`` wrapper, called
   once FastAPI resolved every dependency, makes the lookup and answers a hit itself (with
   the fast path, it binds its options to the lookup made in step 2).
4. The app's ``http.response.start`` is held until the first body message. A complete body in
   one message, up to ``max_body_size``, goes through ``astore`` (validators, storage,
   X-Cache, 304); anything else (``more_body``, too large, ``pathsend``, trailers) streams
   through untouched and is never stored (S11). A request whose lookup was never made (a
   dependency refused it) passes through untouched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import URL
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cachekit_core import Cache, http
from cachekit_core.httpcache import (
    MISS,
    HttpCache,
    HttpSettings,
    Lookup,
    Request,
    Response,
    ViewOptions,
)
from cachekit_core.results import now_us

from .routes import RoutePlan, check_routes, match_route, plan_of, router_of

__all__ = ["CacheMiddleware", "PendingLookup", "current_lookup", "http_settings"]

#: The keys in ``scope`` where a session middleware records that the session was read, or
#: changed (cachekit's ``Session`` also says ``scope["session"].modified``).
SESSION_ACCESSED = "cachekit.session_accessed"
SESSION_MODIFIED = "cachekit.session_modified"
#: The key in ``scope`` holding this request's ``PendingLookup``.
SCOPE_KEY = "cachekit"

UserFunc = Callable[[Scope], "str | None"]
RawHeaders = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class PendingLookup:
    """The lookup of the request in flight. A mutable holder rather than the ``Lookup``
    itself: an endpoint may run in a copied context (threadpool, task group) where setting
    the context variable would not reach the middleware, but mutating this object does."""

    http: HttpCache
    lookup: Lookup
    bound: bool = False  # a view was bound: the outermost decorated endpoint wins
    # No lookup was made yet: the kit.cache wrapper makes it inside the route, after the
    # dependencies (a request refused before that passes through untouched).
    deferred: bool = False
    plan: RoutePlan | None = None  # the matched route's plan (None: routes unknown)
    # The options of the URL's cached GET route, for the invalidation an unsafe method makes.
    url_view: ViewOptions | None = None


current_lookup: ContextVar[PendingLookup | None] = ContextVar(
    "cachekit_current_lookup", default=None
)


#: ``HttpSettings`` fields FastAPI sets differently when no ``settings`` object is given:
#: requests carrying Starlette's session cookie bypass the shared cache (S9).
DEFAULTS: Mapping[str, Any] = MappingProxyType({"session_cookie": "session"})


def http_settings(
    settings: HttpSettings | None, options: Mapping[str, Any], owner: str
) -> HttpSettings:
    """``settings`` with ``options`` (``HttpSettings`` field names) replacing its fields; with
    no ``settings``, ``HttpSettings`` with FastAPI's ``DEFAULTS``. Values are checked by
    ``HttpSettings`` itself (``ConfigurationError``); an unknown name is a ``TypeError``."""
    names = HttpSettings.field_names()
    unknown = [name for name in options if name not in names]
    if unknown:
        raise TypeError(
            f"{owner}() got an unexpected keyword argument {unknown[0]!r}; "
            f"HTTP settings: {', '.join(names)}"
        )
    if settings is None:
        return HttpSettings(**{**DEFAULTS, **options})
    if not isinstance(settings, HttpSettings):
        raise TypeError(f"{owner}(settings=...) takes an HttpSettings, not {settings!r}")
    return dataclasses.replace(settings, **options) if options else settings


class CacheMiddleware:
    """Serve GET/HEAD from the cache before routing; validate and store what the app renders.

    ``CacheMiddleware(app, cache, settings=None, user=None, **options)``: ``options`` are
    ``HttpSettings`` fields (``shared_cache=True``, ``max_body_size=...``), applied to
    ``settings`` or, without it, to FastAPI's defaults (``HttpSettings`` with
    ``session_cookie="session"``, Starlette's cookie name; an explicit ``settings`` is taken
    as it is). ``user(scope) -> str | None`` names the user for ``per_user`` views.
    ``http`` shares an existing ``HttpCache`` (``CacheKit`` passes its own), which brings its
    cache and settings: it is given alone.
    """

    def __init__(
        self,
        app: ASGIApp,
        /,
        cache: Cache | None = None,
        *,
        settings: HttpSettings | None = None,
        user: UserFunc | None = None,
        http: HttpCache | None = None,
        **options: Any,
    ) -> None:
        if http is None:
            if cache is None:
                raise TypeError("CacheMiddleware needs cache=Cache(...) (or http=HttpCache(...))")
            http = HttpCache(cache, http_settings(settings, options, "CacheMiddleware"))
        elif cache is not None or settings is not None or options:
            raise TypeError(
                "CacheMiddleware(http=...) uses that HttpCache's cache and settings: "
                "pass no cache, settings or setting keywords with it"
            )
        self.app = app
        self.http = http
        self.user = user
        self._checked: set[int] = set()  # routers whose kit.cache uses were checked

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # websocket, lifespan: nothing to cache
            await self.app(scope, receive, send)
            return
        mode, plan = self._route(scope)
        if mode is _PASS:  # not a cached route: untouched, at no cost
            await self.app(scope, receive, send)
            return
        url_view = None
        if mode is _UNSAFE:  # the URL's GET is cached: invalidate it if this succeeds
            url_view, plan = _base_view(plan), None
        request = self._request(scope, plan)
        if mode is _DEFERRED:
            lookup = Lookup(request, None, MISS, since=now_us())
        else:
            lookup = await self.http.alookup(request, _base_view(plan))
            if lookup.response is not None:  # HIT / STALE (or only-if-cached 504): no routing
                await send_response(send, lookup.response, request.method)
                return
        pending = PendingLookup(
            self.http, lookup, deferred=mode is _DEFERRED, plan=plan, url_view=url_view
        )
        scope[SCOPE_KEY] = pending
        token = current_lookup.set(pending)
        exchange = _Exchange(self.http, scope, pending, send)
        try:
            await self.app(scope, receive, exchange.send)
        except Exception:
            exchange.start = None  # a held start is dropped: the error handlers answer instead
            if exchange.started or pending.deferred or pending.lookup.stale is None:
                raise
            # stale-if-error: nothing went out yet and a stale copy is at hand. The core
            # decides from a 5xx response whether the copy may be served (R3); if it will
            # not, the error goes on to the app's error handlers as if we were not here.
            exchange.settled = True
            served = await self.http.astore(pending.lookup, Response(500, [], b""))
            if served.status >= 500:
                raise
            await send_response(send, served, request.method)
        else:
            await exchange.flush()
        finally:
            current_lookup.reset(token)
            await exchange.release()

    def _route(self, scope: Scope) -> tuple[object, RoutePlan | None]:
        """How this request is handled (``_PASS``, ``_FAST``, ``_DEFERRED``, ``_UNSAFE``) and
        the plan of the route it goes to (None when the app's routes cannot be seen)."""
        router = router_of(scope.get("app")) or router_of(self.app)
        safe = scope["method"] in ("GET", "HEAD")
        if router is None:
            # An app whose routes cannot be seen: a shared cache answers before it, as a
            # proxy would; otherwise a kit.cache endpoint inside it makes the lookup.
            if not safe:
                return _UNSAFE, None
            return (_FAST if self.http.settings.shared_cache else _DEFERRED), None
        if id(router) not in self._checked:
            check_routes(router, user_known=self.user is not None)
            self._checked.add(id(router))
        # HEAD as the GET it stands for (K7: answered from the GET's page), unsafe methods
        # by the GET route of their URL (whose page they invalidate).
        get = scope if scope["method"] == "GET" else {**scope, "method": "GET"}
        route = match_route(router, get)
        plan = plan_of(route) if route is not None else None
        if plan is None or not self._cached(plan):
            return _PASS, None
        if not safe:
            return _UNSAFE, plan
        return (_FAST if plan.fast else _DEFERRED), plan

    def _cached(self, plan: RoutePlan) -> bool:
        """Whether the cache handles the route: decorated, or (shared-cache mode) a route whose
        hits can skip nothing. Other routes with dependencies are cached only decorated: an
        undecorated endpoint has no wrapper to answer a hit after its dependencies."""
        return plan.options is not None or (self.http.settings.shared_cache and plan.fast)

    def _request(self, scope: Scope, plan: RoutePlan | None) -> Request:
        raw_headers = scope.get("headers", ())
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers]
        # The raw path, byte for byte: two spellings of a path never share an entry (K6).
        raw = scope.get("raw_path")
        path = raw.split(b"?", 1)[0].decode("latin-1") if raw else scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        user = self.user(scope) if self.user is not None else None
        options = plan.options if plan is not None else None
        if options is not None and options.per_user and plan is not None and plan.credentials:
            # A per-user page of a guarded route is keyed by the credentials its security
            # scheme accepted (the route's dependencies check them before a hit is served).
            user = self._credentials_user(user, plan, headers, query)
        elif options is not None and options.public:
            # The same page for everyone the route admits: the credentials are the route's
            # business, and the cache sees the request without them.
            headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
        return Request(
            method=scope["method"],
            scheme=scope.get("scheme", "http"),
            host=_host(scope),
            path=path,
            query=query,
            headers=headers,
            user=user,
        )

    def _credentials_user(
        self, user: str | None, plan: RoutePlan, headers: list[tuple[str, str]], query: str
    ) -> str | None:
        """``user`` with a digest of the credentials the route's schemes read, or None when
        neither is there (the per-user page then bypasses the cache)."""
        found = []
        for credential in plan.credentials:
            if credential.where == "header":
                value = http.get_one(headers, credential.name)
            elif credential.where == "cookie":
                value = http.get_cookie(headers, credential.name)
            else:
                value = _query_value(query, credential.name)
            if value:
                found.append(f"{credential.where}:{credential.name}={value}")
        if not found:
            return user
        material = "\n".join(found).encode("utf-8", "surrogateescape")
        key = self.http.cache.secret_key or b"cachekit-credentials"
        digest = hmac.new(key, material, hashlib.sha256).hexdigest()[:32]
        return f"{user}|cred:{digest}" if user is not None else f"cred:{digest}"


#: How ``CacheMiddleware`` handles a request (``_route``).
_PASS, _FAST, _DEFERRED, _UNSAFE = object(), object(), object(), object()


def _base_view(plan: RoutePlan | None) -> ViewOptions | None:
    """The view options of a decorated route before its tags are known (None: undecorated)."""
    if plan is None or plan.options is None:
        return None
    return plan.options.view()


def _query_value(query: str, name: str) -> str | None:
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return None


class _Exchange:
    """Sits on ``send`` for one request: holds the start message, buffers a one-message body."""

    def __init__(
        self, httpcache: HttpCache, scope: Scope, pending: PendingLookup, send: Send
    ) -> None:
        self.http = httpcache
        self.scope = scope
        self.pending = pending
        self.downstream = send
        self.start: Message | None = None  # held until the first body message
        self.started = False  # a start message went downstream
        self.settled = False  # astore ran (or the claim was dropped): never release twice

    async def send(self, message: Message) -> None:
        if self.pending.deferred:  # no lookup was made (a dependency answered): untouched
            await self.downstream(message)
            return
        if message["type"] == "http.response.start" and not self.started and self.start is None:
            self.start = message
            return
        start, self.start = self.start, None
        if start is not None:
            body = message.get("body", b"")
            if (
                message["type"] == "http.response.body"
                and not message.get("more_body", False)
                and not start.get("trailers", False)
                and len(body) <= self.http.settings.max_body_size
            ):
                await self._respond(start, bytes(body))
                return
            await self._stream(start)
        await self.downstream(message)

    async def flush(self) -> None:
        """The app returned: a start it sent without any body goes out as it is."""
        start, self.start = self.start, None
        if start is not None:
            await self._stream(start)

    async def _respond(self, start: Message, body: bytes) -> None:
        self.started = True
        lookup = self.pending.lookup
        if lookup.response is not None:
            # A per-user hit the endpoint returned: the core already finished it.
            await self.downstream(start)
            await self.downstream({"type": "http.response.body", "body": body})
            return
        status: int = start["status"]
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
        plan = self.pending.plan
        if plan is not None and plan.vary and status < 500:
            # The headers and cookies the route declared (Header(), Cookie()): the page
            # varies on them, so they are part of its key (and downstream caches know).
            vary = http.patch_vary(http.get_all(headers, "vary"), *plan.vary)
            headers = [(k, v) for k, v in headers if k.lower() != "vary"] + [("Vary", vary)]
        if self.scope.get(SESSION_ACCESSED):
            # S10: a response that read the session depends on the Cookie header.
            vary = http.patch_vary(http.get_all(headers, "vary"), "Cookie")
            headers = [(k, v) for k, v in headers if k.lower() != "vary"] + [("Vary", vary)]
        session = self.scope.get("session")
        # A session middleware outside this one will add a Set-Cookie we never see: the
        # response is as personal as one that sets a cookie (S7), so it is not stored.
        personal = bool(self.scope.get(SESSION_MODIFIED)) or getattr(session, "modified", 0) is True
        await self._invalidate(status)
        self.settled = True
        response = await self.http.astore(
            lookup, Response(status, headers, body), personal=personal
        )
        await send_response(self.downstream, response, lookup.request.method)

    async def _stream(self, start: Message) -> None:
        self.started = True
        await self._invalidate(start["status"])
        await self.release()
        await self.downstream(start)

    async def _invalidate(self, status: int) -> None:
        # R4: before anything goes out, so the client's next GET cannot see the old entry.
        request = self.pending.lookup.request
        if http.invalidates_stored(request.method, status):
            view = self.pending.url_view or self.pending.lookup.view
            await self.http.ainvalidate_url(request, view)

    async def release(self) -> None:
        """Drop this request's claim on re-rendering a stale entry when nothing was stored
        (the app streamed, sent nothing, or raised), so the next request re-renders."""
        if self.settled or self.pending.deferred:
            return
        self.settled = True
        await self.http.arelease(self.pending.lookup)


_FRAMING = frozenset((b"content-length", b"transfer-encoding"))


def encode_headers(response: Response, method: str) -> RawHeaders:
    """ASGI headers for a core response, with framing made consistent with its body (C8)."""
    if method == "HEAD":  # a HEAD's Content-Length describes the GET body it stands for (K7)
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    # The whole body is known here: its length replaces any framing the app announced.
    lines = []
    for k, v in response.headers:
        name, value = k.lower().encode("latin-1"), v.encode("latin-1")
        if name not in _FRAMING:
            lines.append((name, value))
    if response.status >= 200 and response.status not in (204, 304):
        lines.append((b"content-length", str(len(response.body)).encode("ascii")))
    return lines


async def send_response(send: Send, response: Response, method: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": encode_headers(response, method),
        }
    )
    await send({"type": "http.response.body", "body": response.body})


#: ``_netloc``'s answers by (scheme, server, Host header). Cleared when full: the Host header
#: comes from clients, so the memo must stay bounded.
_NETLOCS: dict[tuple[object, object, bytes | None], str] = {}
_NETLOCS_MAX = 256


def _host(scope: Scope) -> str:
    """The host exactly as Starlette's ``request.url`` sees it: the validated ``Host`` header,
    else the server address (K2). ``X-Forwarded-Host`` counts only if a proxy middleware
    outside this one already rewrote ``Host`` (the app trusts it then, so do we)."""
    host: bytes | None = None
    for k, v in scope.get("headers", ()):
        if k == b"host":
            host = v
            break
    scheme, server = scope.get("scheme", "http"), scope.get("server")
    key = (scheme, server, host)
    try:
        return _NETLOCS[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable server (a list): no memo
        return _netloc(scheme, server, host)
    netloc = _netloc(scheme, server, host)
    if len(_NETLOCS) >= _NETLOCS_MAX:
        _NETLOCS.clear()
    _NETLOCS[key] = netloc
    return netloc


def _netloc(scheme: object, server: object, host: bytes | None) -> str:
    """``URL(scope).netloc`` for a scope with only these parts: a pure function of them."""
    host_lines: Iterable[tuple[bytes, bytes]] = [] if host is None else [(b"host", host)]
    probe = {
        "type": "http",
        "scheme": scheme,
        "server": server,
        "path": "",
        "headers": host_lines,
    }
    try:
        return URL(scope=probe).netloc
    except (KeyError, ValueError):  # an unknown scheme with an invalid Host: no host at all
        return ""
