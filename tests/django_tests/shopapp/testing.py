"""Helpers shared by the shopapp tests (fixtures stay in the test modules)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from django.http import HttpResponseBase

from cachekit_core.httpcache import Request

CACHE_MIDDLEWARE = "cachekit_django.middleware.CacheMiddleware"
BACKEND = "cachekit_django.cache.CachekitCache"


def use_cachekit(
    settings: Any,
    *,
    http: dict[str, Any] | None = None,
    redis_url: str | None = None,
    middleware: list[str] | None = None,
) -> None:
    """Put CacheMiddleware on top of the test settings' MIDDLEWARE and make ``CACHES["default"]``
    cachekit's engine, in process or (``redis_url``) an L1 in front of Redis (changing CACHES
    builds a fresh engine: nothing leaks from one test into the next)."""
    location = {"LOCATION": redis_url} if redis_url else {}
    entry = {"BACKEND": BACKEND, **location, "OPTIONS": {"NAMESPACE": "shoptest"}}
    settings.CACHES = {"default": entry}
    settings.CACHEKIT = {"HTTP": http} if http else {}
    rest = [m for m in (middleware or settings.MIDDLEWARE) if m != CACHE_MIDDLEWARE]
    settings.MIDDLEWARE = [CACHE_MIDDLEWARE, *rest]


def url(path: str, *headers: str, **params: Any) -> str:
    """``/echo/?h=Name: value&...``: the echo view sends ``headers``; params as given."""
    query: list[tuple[str, Any]] = [("h", h) for h in headers]
    for key, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        query += [(key, v) for v in values]
    return f"{path}?{urlencode(query)}" if query else path


def x_cache(response: HttpResponseBase) -> str | None:
    return response.headers.get("X-Cache")


def renders(response: HttpResponseBase) -> int:
    """The render counter of an echo page (``n=``)."""
    match = re.search(rb"n=(\d+)", response.content)  # type: ignore[attr-defined]
    assert match is not None, response.content  # type: ignore[attr-defined]
    return int(match.group(1))


def stored(client: Any, path: str, **extra: Any) -> bool:
    """Whether ``path`` was stored: a second request is a HIT serving the same render."""
    first = client.get(path, **extra)
    second = client.get(path, **extra)
    return x_cache(second) == "HIT" and second.content == first.content


def page_request(path: str, query: str = "", method: str = "GET") -> Request:
    """The core ``Request`` of a decorated view's page as ``cache_view`` keys it: the URL and
    the active language and time zone (``cachekit_django._pages.key_variant``)."""
    from django.test import RequestFactory

    from cachekit_django._pages import key_variant

    variant = key_variant(RequestFactory().get(path))
    return Request(method, "http", "testserver", path, query, [], variant=variant)
