"""``CacheMiddleware``'s request flow and ``cache_view``'s bind, written once as async code
(``_sync/pages.py`` is generated); the pure steps they call are in ``cachekit_django._pages``.

Per request:

1. ``lookup`` before routing: a HIT or STALE page is served without calling the view.
2. Otherwise the view runs. A ``cache_view``-decorated view first binds its options to the
   lookup kept on the request (``abind``), which snapshots its tags before it renders and, for
   per-user views, looks the page up again under the user's key.
3. ``store`` finishes every response: validators and 304s for all, storage for decorated views
   (and, with ``CACHEKIT["HTTP"]["SHARED_CACHE"]``, for any response its headers allow).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponseBase

from cachekit_core import http
from cachekit_core.httpcache import ViewOptions

from .._pages import (
    State,
    auser_id,
    core_request,
    core_response,
    get_http_cache,
    mark,
    passes_through,
    served,
    to_django,
    vary_on_session,
)
from .._transactions import uncommitted_writes


async def abind(request: HttpRequest, view: ViewOptions) -> HttpResponseBase | None:
    """Bind a decorated view's options; return the page to serve instead of rendering, if any."""
    state: State | None = getattr(request, "_cachekit", None)
    if state is None:
        return None  # no CacheMiddleware on this request: the view just runs
    if view.per_user:
        state.lookup.request.user = await auser_id(request)
    state.lookup = await state.http.abind_view(state.lookup, view)
    return served(state.lookup)


class AsyncPageFlow:
    """The middleware's flow; ``get_response`` is the next handler (a coroutine function on
    the async side, a plain one on the sync side: typed ``Any`` so one source serves both)."""

    get_response: Callable[[HttpRequest], Any]

    async def _ahandle(self, request: HttpRequest) -> HttpResponseBase:
        core = core_request(request)
        if core is None:
            bypassed: HttpResponseBase = await self.get_response(request)
            return bypassed
        http_cache = get_http_cache()
        lookup = await http_cache.alookup(core)
        if lookup.response is not None:
            return to_django(lookup.response)
        state = request._cachekit = State(http_cache, lookup)  # type: ignore[attr-defined]
        response: HttpResponseBase = await self.get_response(request)
        vary_on_session(request, response)
        if http.invalidates_stored(core.method, response.status_code):
            await http_cache.ainvalidate_url(core, state.lookup.view)  # R4
        if passes_through(response):
            await http_cache.arelease(state.lookup)  # a stale page's re-render claim, if held
            return mark(state, response)
        sent = core_response(response)
        # Rendered from rows this thread has not committed (a rollback may undo them):
        # validators apply, but the page is never stored for other requests.
        stored = await http_cache.astore(state.lookup, sent, personal=uncommitted_writes())
        return to_django(stored, response, sent)
