"""``CacheMiddleware``: Django's request/response <-> cachekit_core's HTTP cache.

Every decision (bypass, storable, key, validators, 304, Age, X-Cache) is made by
``cachekit_core.httpcache``; the adapter only translates (``cachekit_django._pages``). Per
request:

1. Nothing before routing (except with ``CACHEKIT["HTTP"]["SHARED_CACHE"]``, where any
   response may be stored and is looked up first): a request that reaches no ``cache_view``
   passes through untouched (no lookup, no Redis command, no ``X-Cache`` or ``ETag``).
2. A ``cache_view``-decorated view looks its page up once routed (``bind`` / ``abind``), under
   a key that covers the active language and time zone, and serves a HIT or STALE page.
3. On the way out the middleware stores what a cached view rendered: validators, 304s and
   storage, after the middleware below added their cookies and ``Vary``.

Place it near the top of ``MIDDLEWARE``, above ``SessionMiddleware``, ``CsrfViewMiddleware``
and ``LocaleMiddleware`` (check W002), so that the cookies and ``Vary`` the inner middleware
add are seen before anything is stored.

The flow is written once as async code (``_async/pages.py``); the sync one is generated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from ._async.pages import AsyncPageFlow, abind
from ._pages import get_http_cache, http_settings
from ._sync.pages import SyncPageFlow, bind

__all__ = ["CacheMiddleware", "abind", "bind", "get_http_cache", "http_settings"]


class CacheMiddleware(SyncPageFlow, AsyncPageFlow):
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
            return self._ahandle(request)
        return self._handle(request)
