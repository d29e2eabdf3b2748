"""Django's request/response <-> cachekit_core's HTTP cache: the pure steps of
``CacheMiddleware`` and ``cache_view`` (their I/O is written once in ``_async/pages.py``;
``_sync/pages.py`` is generated), the HTTP settings and the process's ``HttpCache``.

Every decision (bypass, storable, key, validators, 304, Age, X-Cache) is made by
``cachekit_core.httpcache``; this module only translates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.http.request import HttpHeaders

from cachekit_core import Cache, ConfigurationError, http
from cachekit_core.httpcache import HttpCache, HttpSettings, Lookup, Request, Response

from . import conf

__all__ = [
    "State",
    "auser_id",
    "core_request",
    "core_response",
    "get_http_cache",
    "http_settings",
    "mark",
    "passes_through",
    "served",
    "to_django",
    "user_id",
    "vary_on_session",
]


def http_settings() -> HttpSettings:
    """``CACHEKIT["HTTP"]`` as core settings, validated by the core (one definition for every
    adapter); ``ImproperlyConfigured`` names the bad key."""
    root = getattr(settings, "CACHEKIT", None) or {}
    config = (root.get("HTTP") if isinstance(root, Mapping) else None) or {}
    try:
        return HttpSettings.from_mapping(config, session_cookie=settings.SESSION_COOKIE_NAME)
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f'CACHEKIT["HTTP"]: {exc}') from exc


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


setting_changed.connect(_on_setting_changed, dispatch_uid="cachekit_django._pages")


@dataclass(slots=True)
class State:
    """What the middleware leaves on the request for ``cache_view`` to bind."""

    http: HttpCache
    lookup: Lookup


def core_request(request: HttpRequest) -> Request | None:
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


def core_response(response: HttpResponseBase) -> Response:
    """A buffered (not streaming) response as the core sees it."""
    headers = list(response.headers.items())
    # Django keeps cookies apart from headers: the core must see them to refuse storage (S7).
    headers += [("Set-Cookie", m.OutputString()) for m in response.cookies.values()]
    return Response(response.status_code, headers, response.content)  # type: ignore[attr-defined]


def to_django(
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
    ``served`` has one. ``None`` when a name repeats: ``to_django`` then joins the values
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


def served(lookup: Lookup) -> HttpResponseBase | None:
    """The page a lookup answered with, marked so the middleware passes it on untouched."""
    if lookup.response is None:
        return None
    response = to_django(lookup.response)
    response._cachekit_served = True  # type: ignore[attr-defined]
    return response


def _id_of(user: Any) -> str | None:
    return str(user.pk) if user is not None and getattr(user, "is_authenticated", False) else None


# Django reads the user with ``request.user`` in sync code and ``await request.auser()`` in
# async code: one name per side, so that one source (``_async/pages.py``) serves both.
def user_id(request: HttpRequest) -> str | None:
    """The logged-in user's id (a per-user view's key), or None."""
    return _id_of(getattr(request, "user", None))


async def auser_id(request: HttpRequest) -> str | None:
    """``user_id`` in async code (``request.auser()``, where AuthenticationMiddleware set it)."""
    auser = getattr(request, "auser", None)
    return _id_of(await auser() if auser is not None else getattr(request, "user", None))


def vary_on_session(request: HttpRequest, response: HttpResponseBase) -> None:
    # S10: a page that read the session differs per session, whatever the middleware order.
    session = getattr(request, "session", None)
    if session is not None and getattr(session, "accessed", False):
        response.headers["Vary"] = http.patch_vary(
            [response.headers["Vary"]] if "Vary" in response.headers else [], "Cookie"
        )


def mark(state: State, response: HttpResponseBase) -> HttpResponseBase:
    """X-Cache on a response that passed through (a header only: the body stays unread)."""
    name = state.http.settings.header_name
    if name and not getattr(response, "_cachekit_served", False):
        response.headers[name] = state.lookup.state
    return response


def passes_through(response: HttpResponseBase) -> bool:
    # Streaming and file responses are never buffered (S11); pages bind() served are final.
    return response.streaming or getattr(response, "_cachekit_served", False)
