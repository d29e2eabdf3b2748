"""``CacheMiddleware``'s request flow and ``cache_view``'s, written once as async code
(``_sync/pages.py`` is generated); the pure steps they call are in ``cachekit_django._pages``.

Per request:

1. The middleware looks nothing up before routing (except in shared-cache mode, where any
   response may be stored): it leaves a ``State`` on the request and calls the next handler.
2. A ``cache_view``-decorated view looks its page up once routed (``abind``): the key covers
   the language and time zone the middleware below activated, the view's per-user and
   ``query_params`` options; its tags are snapshotted before it renders. A HIT or STALE page
   is served from there, with the client's own CSRF token where the stored page has one.
3. On the way out the middleware stores what the view rendered (validators, 304s, storage).
   A request that reached no cached view passes through untouched: no lookup, no header.

Without the middleware, ``cache_view`` does 2 and 3 itself around the view (as Django's
``cache_page`` does), seeing only what the view returned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from cachekit_core import http
from cachekit_core.httpcache import ViewOptions

from .._pages import (
    State,
    auser_id,
    core_request,
    core_response,
    csrf_page,
    csrf_token_used,
    fill_csrf,
    get_http_cache,
    key_variant,
    mark,
    no_store,
    passes_through,
    served,
    strip_csrf_vary,
    to_django,
    vary_on_session,
)
from .._transactions import uncommitted_writes


async def abind(
    request: HttpRequest, view: ViewOptions, render: Callable[[], Any], *, csrf: bool = True
) -> HttpResponseBase:
    """A decorated view's response: its stored page, or ``render()`` (the view), stored on
    the way out by the middleware or, without it, here."""
    state: State | None = getattr(request, "_cachekit", None)
    alone = state is None
    if state is None:
        state = State(get_http_cache())
    state.csrf = csrf
    page: HttpResponseBase | None = await _alookup(request, state, view)
    if page is not None:
        return page
    try:
        response: HttpResponseBase = await render()
    except BaseException:
        if alone and state.lookup is not None:
            await state.http.arelease(state.lookup)  # never leave others waiting on a claim
        raise
    state.view_vary = [response.headers["Vary"]] if "Vary" in response.headers else []
    state.token = csrf_token_used(request)
    if not alone or state.lookup is None:
        return response  # the middleware stores it, after the middleware below it ran
    return await _astore(request, state, response, alone=True)


async def _alookup(
    request: HttpRequest, state: State, view: ViewOptions
) -> HttpResponseBase | None:
    """Look the view's page up (keyed after routing); the page to serve, or None."""
    core = core_request(request)
    if core is None:
        return None  # a disallowed host: the view's own get_host() answers 400
    core.variant = key_variant(request)
    if view.per_user:
        core.user = await auser_id(request)
    http_cache, first = state.http, state.lookup
    if first is not None and first.request.variant == core.variant:
        first.request.user = core.user  # shared-cache mode: bind to the lookup made
        state.lookup = await http_cache.abind_view(first, view)
    else:
        if first is not None:  # shared-cache mode, another key: its claim is not ours
            await http_cache.arelease(first)
        since = first.since if first is not None else 0
        state.lookup = await http_cache.alookup(core, view, since=since)
    page = served(state.lookup)
    if page is not None:
        fill_csrf(request, page)
    return page


class AsyncPageFlow:
    """The middleware's flow; ``get_response`` is the next handler (a coroutine function on
    the async side, a plain one on the sync side: typed ``Any`` so one source serves both)."""

    get_response: Callable[[HttpRequest], Any]

    async def _ahandle(self, request: HttpRequest) -> HttpResponseBase:
        http_cache = get_http_cache()
        state = State(http_cache)
        if http_cache.settings.shared_cache:  # any response may be stored: look up first
            core = core_request(request)
            if core is not None:
                lookup = await http_cache.alookup(core)
                if lookup.response is not None:
                    return to_django(lookup.response)
                state.lookup = lookup
        request._cachekit = state  # type: ignore[attr-defined]
        try:
            response: HttpResponseBase = await self.get_response(request)
        except BaseException:
            if state.lookup is not None:
                await http_cache.arelease(state.lookup)  # never leave others waiting
            raise
        if state.lookup is None:
            return response  # no cached view ran: untouched, nothing looked up or added
        return await _astore(request, state, response, alone=False)


async def _astore(
    request: HttpRequest, state: State, response: HttpResponseBase, *, alone: bool
) -> HttpResponseBase:
    """Finish a rendered response: validators, 304s and storage through the core.
    ``alone``: ``cache_view`` without the middleware, which sees the view's response only
    (the cookies the middleware above add later are unknown: a page that wrote the session
    or used a CSRF token it may not store is not stored)."""
    http_cache, lookup = state.http, state.lookup
    assert lookup is not None
    core = lookup.request
    vary_on_session(request, response)
    if http.invalidates_stored(core.method, response.status_code):
        # R4, R10: the URL, and the same-origin Location / Content-Location it names.
        await http_cache.ainvalidate_url(core, lookup.view, list(response.headers.items()))
    if passes_through(response) or no_store(response, lookup.view):
        await http_cache.arelease(lookup)  # a claim on its page, if held
        return mark(state, response)
    personal = uncommitted_writes()  # rows a rollback may undo: validators, never stored
    if personal:
        lookup.reason = "uncommitted-writes"
    skip_cookie = None
    token = state.token or csrf_token_used(request)
    if token and state.csrf:
        skip_cookie = settings.CSRF_COOKIE_NAME
    sent = core_response(response, skip_cookie=skip_cookie)
    vary = response.headers.get("Vary")
    stripped = False
    if token:
        if state.csrf and csrf_page(request, sent):
            stripped = strip_csrf_vary(request, state, sent)
        else:
            personal = True  # the client's token stays in its page, which is its own
    if alone:
        session = getattr(request, "session", None)
        personal = personal or bool(getattr(session, "modified", False))
    stored = await http_cache.astore(lookup, sent, personal=personal)
    out = to_django(stored, response, sent)
    if stored is not sent:
        fill_csrf(request, out)  # a stale copy served for an error, say
    if stripped and vary is not None:
        out.headers["Vary"] = vary  # this client's page keeps the Vary: Cookie of its cookie
    return out
