"""``CacheMiddleware``: Django's request/response <-> cachekit_core's HTTP cache.

Every decision (bypass, storable, key, validators, 304, Age, X-Cache) is made by
``cachekit_core.httpcache``; this module only translates. Per request:

1. ``lookup`` before routing: a HIT or STALE page is served without calling the view.
2. Otherwise the view runs. A ``cache_view``-decorated view first binds its options to the
   lookup kept on the request (``bind`` / ``abind``), which snapshots its tags before it renders
   and, for per-user views, looks the page up again under the user's key.
3. ``store`` finishes every response: validators and 304s for all, storage for decorated views
   (and, with ``CACHEKIT["HTTP"]["SHARED_CACHE"]``, for any response its headers allow).

Place it near the top of ``MIDDLEWARE``, above ``SessionMiddleware``, so that the cookies and
``Vary`` the inner middleware add are seen before anything is stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.http.request import HttpHeaders

from cachekit_core import Cache, http
from cachekit_core.httpcache import (
    HttpCache,
    HttpSettings,
    Lookup,
    Request,
    Response,
    ViewOptions,
)

from . import conf
from ._transactions import uncommitted_writes

__all__ = ["CacheMiddleware", "abind", "bind", "get_http_cache", "http_settings"]

HTTP_KEYS = {
    "HEADER_NAME": (str, type(None)),
    "CDN_CACHE_CONTROL": (str, type(None)),
    "HONOUR_REQUEST_NO_CACHE": (bool,),
    "MAX_BODY_SIZE": (int,),
    "SHARED_CACHE": (bool,),
    "CACHEABLE_STATUSES": (list, tuple, set, frozenset),
}


def http_settings() -> HttpSettings:
    """``CACHEKIT["HTTP"]`` as core settings; ``ImproperlyConfigured`` names a bad key."""
    root = getattr(settings, "CACHEKIT", None) or {}
    config = (root.get("HTTP") if isinstance(root, Mapping) else None) or {}
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured('CACHEKIT["HTTP"] must be a dict')
    for key, value in config.items():
        if key not in HTTP_KEYS:
            raise ImproperlyConfigured(
                f'CACHEKIT["HTTP"] has an unknown key {key!r}; valid keys: {sorted(HTTP_KEYS)}'
            )
        negative = key == "MAX_BODY_SIZE" and isinstance(value, int) and value < 0
        if not isinstance(value, HTTP_KEYS[key]) or negative:
            raise ImproperlyConfigured(f'CACHEKIT["HTTP"]["{key}"] = {value!r} has a bad type')
    statuses = config.get("CACHEABLE_STATUSES", (200,))
    if not all(isinstance(s, int) and 200 <= s < 300 for s in statuses):
        # 3xx/4xx/5xx pages are a cache-poisoning vector (CPDoS): the core refuses most anyway.
        raise ImproperlyConfigured('CACHEKIT["HTTP"]["CACHEABLE_STATUSES"] must be 2xx integers')
    options: dict[str, Any] = {
        name.lower(): config[name] for name in HTTP_KEYS if name in config
    }  # the core's names, lowercased; absent keys keep the core's defaults
    if "header_name" in options:
        options["header_name"] = options["header_name"] or None  # "" or None: no header
    options["cacheable_statuses"] = frozenset(statuses)
    return HttpSettings(session_cookie=settings.SESSION_COOKIE_NAME, **options)


_http: tuple[Cache, HttpCache] | None = None


def get_http_cache() -> HttpCache:
    """The process-wide ``HttpCache`` on ``conf.engine()`` (rebuilt when settings change)."""
    global _http
    cache, current = conf.engine(), _http
    if current is None or current[0] is not cache:
        current = _http = (cache, HttpCache(cache, http_settings()))
    return current[1]


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    global _http
    if setting in ("CACHEKIT", "SESSION_COOKIE_NAME", "SECRET_KEY", "CACHES"):
        _http = None


setting_changed.connect(_on_setting_changed, dispatch_uid="cachekit_django.middleware")


# --------------------------------------------------------------------------- translation


@dataclass(slots=True)
class _State:
    """What the middleware leaves on ``request._cachekit`` for ``cache_view`` to bind."""

    http: HttpCache
    lookup: Lookup


def _core_request(request: HttpRequest) -> Request | None:
    try:
        host = request.get_host()  # K2: the validated host the view sees, X-Forwarded-Host rules
    except DisallowedHost:
        return None  # the view's own get_host() answers 400; nothing to cache
    return Request(
        method=request.method or "GET",
        scheme=request.scheme or "http",
        host=host,
        path=request.path,  # what Django routes by (K6: used byte for byte by the core)
        query=request.META.get("QUERY_STRING", ""),
        # From META, where Django already dropped underscored header names (K5).
        headers=_request_headers(request),
    )


#: META key -> header name as ``HttpHeaders.parse_header_name`` spells it (None: not a header).
#: Bounded: header names come from clients, so an unbounded memo would be a memory leak.
_HEADER_NAMES: dict[str, str | None] = {}
_HEADER_NAMES_MAX = 1024


def _request_headers(request: HttpRequest) -> list[tuple[str, str]]:
    """``list(request.headers.items())`` without building ``HttpHeaders`` (same names, order
    and values): when the view never runs, nothing else needs that object."""
    cached = request.__dict__.get("headers")
    if cached is not None:  # already built (cached_property): reuse it
        return list(cached.items())
    names = _HEADER_NAMES
    headers: dict[str, str] = {}
    for key, value in request.META.items():
        try:
            name = names[key]
        except KeyError:
            name = HttpHeaders.parse_header_name(key)
            if len(names) < _HEADER_NAMES_MAX:
                names[key] = name
        if name is not None:
            headers[name] = value
    return list(headers.items())


def _core_response(response: HttpResponseBase, body: bytes) -> Response:
    headers = list(response.headers.items())
    # Django keeps cookies apart from headers: the core must see them to refuse storage (S7).
    headers += [("Set-Cookie", m.OutputString()) for m in response.cookies.values()]
    return Response(response.status_code, headers, body)


def _to_django(
    served: Response, original: HttpResponseBase | None = None, sent: Response | None = None
) -> HttpResponseBase:
    """``served`` as a Django response, in place on ``original`` when only headers changed."""
    if original is None:
        fresh = _new_django(served)
        if fresh is not None:
            return fresh
        out: HttpResponseBase = HttpResponse(served.body, status=served.status)
    elif served is sent:
        out = original
    else:
        out = HttpResponse(served.body, status=served.status)
        out.cookies = original.cookies  # a 304 keeps Set-Cookie, as Django's own does
    for name in list(out.headers):
        del out.headers[name]
    for name, value in served.headers:
        if name.lower() == "set-cookie":
            continue  # lives in out.cookies
        previous = out.headers.get(name)
        out.headers[name] = value if previous is None else f"{previous}, {value}"
    return out


def _new_django(served: Response) -> HttpResponse | None:
    """The hit path's fresh ``HttpResponse``, its headers passed to the constructor in one go:
    Set-Cookie left out (a fresh response has no cookies) and no Content-Type unless
    ``served`` has one. ``None`` when a name repeats: ``_to_django`` then joins the values
    one by one, as Django encodes each."""
    headers: dict[str, str] = {}
    lowers: set[str] = set()
    for name, value in served.headers:
        lower = name.lower()
        if lower == "set-cookie":
            continue
        if lower in lowers:
            return None  # a repeated name (in any spelling)
        lowers.add(lower)
        headers[name] = value
    out = HttpResponse(served.body, status=served.status, headers=headers)
    if "content-type" not in lowers:
        del out.headers["Content-Type"]  # Django's default; the served page has none
    return out


def _served(lookup: Lookup) -> HttpResponseBase | None:
    if lookup.response is None:
        return None
    response = _to_django(lookup.response)
    response._cachekit_served = True  # type: ignore[attr-defined]  # the middleware passes it on
    return response


def _user_id(user: Any) -> str | None:
    return str(user.pk) if user is not None and getattr(user, "is_authenticated", False) else None


def bind(request: HttpRequest, view: ViewOptions) -> HttpResponseBase | None:
    """Bind a decorated view's options; return the page to serve instead of rendering, if any."""
    state: _State | None = getattr(request, "_cachekit", None)
    if state is None:
        return None  # no CacheMiddleware on this request: the view just runs
    if view.per_user:
        state.lookup.request.user = _user_id(getattr(request, "user", None))
    state.lookup = state.http.bind_view(state.lookup, view)
    return _served(state.lookup)


async def abind(request: HttpRequest, view: ViewOptions) -> HttpResponseBase | None:
    """``bind`` for async views (reads the user with ``request.auser()``)."""
    state: _State | None = getattr(request, "_cachekit", None)
    if state is None:
        return None
    if view.per_user:
        auser = getattr(request, "auser", None)
        user = await auser() if auser is not None else getattr(request, "user", None)
        state.lookup.request.user = _user_id(user)
    state.lookup = await state.http.abind_view(state.lookup, view)
    return _served(state.lookup)


def _vary_on_session(request: HttpRequest, response: HttpResponseBase) -> None:
    # S10: a page that read the session differs per session, whatever the middleware order.
    session = getattr(request, "session", None)
    if session is not None and getattr(session, "accessed", False):
        response.headers["Vary"] = http.patch_vary(
            [response.headers["Vary"]] if "Vary" in response.headers else [], "Cookie"
        )


def _mark(http_cache: HttpCache, state: _State, response: HttpResponseBase) -> HttpResponseBase:
    """X-Cache on a response that passed through (a header only: the body stays unread)."""
    name = http_cache.settings.header_name
    if name and not getattr(response, "_cachekit_served", False):
        response.headers[name] = state.lookup.state
    return response


def _passes_through(response: HttpResponseBase) -> bool:
    # Streaming and file responses are never buffered (S11); pages bind() served are final.
    return response.streaming or getattr(response, "_cachekit_served", False)


class CacheMiddleware:
    """Serve, validate and store responses through the core HTTP cache (sync and async)."""

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        core = _core_request(request)
        if core is None:
            return self.get_response(request)
        http_cache = get_http_cache()
        lookup = http_cache.lookup(core)
        if lookup.response is not None:
            return _to_django(lookup.response)
        state = request._cachekit = _State(http_cache, lookup)  # type: ignore[attr-defined]
        response: HttpResponseBase = self.get_response(request)  # type: ignore[assignment]
        _vary_on_session(request, response)
        if http.invalidates_stored(core.method, response.status_code):
            http_cache.invalidate_url(core)  # R4
        if _passes_through(response):
            http_cache.release(state.lookup)  # a stale page's re-render claim, if it held one
            return _mark(http_cache, state, response)
        sent = _core_response(response, response.content)  # type: ignore[attr-defined]
        # Rendered from rows this thread has not committed (a rollback may undo them):
        # validators apply, but the page is never stored for other requests.
        served = http_cache.store(state.lookup, sent, personal=uncommitted_writes())
        return _to_django(served, response, sent)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        core = _core_request(request)
        if core is None:
            return await self.get_response(request)  # type: ignore[no-any-return,misc]
        http_cache = get_http_cache()
        lookup = await http_cache.alookup(core)
        if lookup.response is not None:
            return _to_django(lookup.response)
        state = request._cachekit = _State(http_cache, lookup)  # type: ignore[attr-defined]
        response: HttpResponseBase = await self.get_response(request)  # type: ignore[misc]
        _vary_on_session(request, response)
        if http.invalidates_stored(core.method, response.status_code):
            await http_cache.ainvalidate_url(core)
        if _passes_through(response):
            await http_cache.arelease(state.lookup)
            return _mark(http_cache, state, response)
        sent = _core_response(response, response.content)  # type: ignore[attr-defined]
        served = await http_cache.astore(state.lookup, sent, personal=uncommitted_writes())
        return _to_django(served, response, sent)
