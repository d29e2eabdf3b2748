"""HTTP response caching I/O, written once as async code (the sync twin is generated)."""

from __future__ import annotations

import secrets

from ... import http
from ...exceptions import SerializationError
from ...results import now_us
from .._base import (
    BYPASS,
    HIT,
    MISS,
    STALE,
    HttpCacheBase,
    Lookup,
    Request,
    Response,
    StoredResponse,
    VaryMarker,
    ViewOptions,
)


class AsyncHttpCache(HttpCacheBase):
    async def alookup(self, request: Request, view: ViewOptions | None = None) -> Lookup:
        """Find a stored response for ``request`` (``view``: the decorated view's options, or
        None in shared-cache mode). Render the view unless the state is HIT or STALE.

        The lookup's time is the request's start for the race guards: a page rendered for it
        is not stored if its URL is invalidated, or one of its tags, after this call (even
        when the view's tags are bound later, after the app's dependencies ran)."""
        return await self._afind(Lookup(request, view, MISS, since=now_us()))

    async def abind_view(self, lookup: Lookup, view: ViewOptions) -> Lookup:
        """Attach the options of the view that is about to render (known only after routing,
        e.g. tags computed from path parameters) and snapshot its tags before it renders.
        A per-user view, or one whose ``query_params`` leave some of the request's out, is
        looked up again under its own key: check ``response``."""
        again = view.per_user and not (lookup.view is not None and lookup.view.per_user)
        if not again and view.query_params is not None and lookup.state != BYPASS:
            again = self._primary_key(lookup.request, view.per_user, view.query_params) != (
                lookup.primary
            )
        if again:
            await self.arelease(lookup)  # the first key's claim is not this view's any more
            return await self._afind(Lookup(lookup.request, view, MISS, since=lookup.since))
        lookup.view = view
        if lookup.state != BYPASS:
            await self._asnapshot(lookup)
        return lookup

    async def _asnapshot(self, lookup: Lookup) -> None:
        tags = lookup.view.tags if lookup.view else ()
        lookup.snapshot = await self.cache.asnapshot(tags, since=lookup.since or None)

    async def _afind(self, lookup: Lookup) -> Lookup:
        request, view = lookup.request, lookup.view
        if self.bypass_reason(request, view) is not None:
            lookup.state = BYPASS
            return lookup
        per_user = view is not None and view.per_user
        params = view.query_params if view is not None else None
        lookup.primary = self._primary_key(request, per_user, params)
        await self._asnapshot(lookup)
        cache = self.cache
        entry = (await cache.aread(lookup.primary)).entry
        marker = VaryMarker.from_wire(entry.value) if entry is not None else None
        if marker is not None:
            lookup.marker = marker
            variant = self._variant_key(request, per_user, marker, params)
            entry = (await cache.aread(variant)).entry
        stored = StoredResponse.from_wire(entry.value) if entry is not None else None
        if stored is None or entry is None:
            if http.only_if_cached(request.headers):
                lookup.state, lookup.response = HIT, Response(504, [], b"")
            return lookup
        state = self._state_of(entry)
        if state == STALE:
            lookup.stale = stored
            if not self._revalidating(entry, stored):
                return lookup  # MISS: kept only as a stale-if-error fallback
            # One request re-renders; the others get STALE.
            lookup.claim = await cache.aclaim(lookup.primary, cache.lock_ttl)
            if lookup.claim is not None:
                return lookup  # MISS: this request re-renders
        lookup.state, lookup.response = state, self._serve(request, stored, state)
        return lookup

    async def astore(
        self, lookup: Lookup, response: Response, *, personal: bool = False
    ) -> Response:
        """Finish a rendered response: validators, headers, storage, X-Cache, 304.
        ``personal``: the response is specific to this client (e.g. it wrote the session
        outside the cache's view): never store it, answer BYPASS."""
        try:
            fallback = self._stale_for_error(lookup, response)
            if fallback is not None:
                return fallback
            if personal:
                lookup.state = BYPASS
            plan = self._prepare(lookup, response)
            if plan is not None:
                try:
                    await self._awrite(lookup, response, *plan)
                except SerializationError as exc:  # e.g. too many tags: serve, don't store
                    self._not_stored(lookup, exc)
            return self._finish(lookup.request, response, lookup.state)
        finally:
            await self.arelease(lookup)

    async def arelease(self, lookup: Lookup) -> None:
        """Give up this request's claim to re-render a stale page (when it will not store:
        the response streamed, the app raised, nothing was sent). Safe to call twice."""
        token, lookup.claim = lookup.claim, None
        if token is not None:
            await self.cache.arelease(lookup.primary, token)

    async def ainvalidate_url(self, request: Request, view: ViewOptions | None = None) -> None:
        """Drop what is stored for this URL (R4: after an unsafe method succeeded). ``view``:
        the options of the view that handled it, if decorated: with ``query_params``, the
        page of the URL's listed parameters is dropped too."""
        probe = Request(
            "GET", request.scheme, request.host, request.path, request.query, [], request.user
        )
        keys = [self._primary_key(probe, False)]
        if request.user is not None:  # the user's own per-user page of this URL too
            keys.append(self._primary_key(probe, True))
        params = view.query_params if view is not None else None
        if params is not None:
            keys.append(self._primary_key(probe, False, params))
            if request.user is not None:
                keys.append(self._primary_key(probe, True, params))
        await self.cache.adelete_many(keys)

    async def _awrite(
        self, lookup: Lookup, response: Response, ttl: float, stale: float, window: float
    ) -> None:
        cache, request, view = self.cache, lookup.request, lookup.view
        per_user = view is not None and view.per_user
        params = view.query_params if view is not None else None
        vary = http.parse_vary(http.get_all(response.headers, "vary"))
        assert vary != "*"  # storable() refused it
        stored = self._stored(response, window)
        if vary:
            marker = lookup.marker
            if marker is None or marker.vary != tuple(vary):
                # New Vary names start a new generation: variants keyed by the old names
                # can never be reached again.
                marker = VaryMarker(tuple(vary), secrets.token_hex(8))
            values = {
                lookup.primary: marker.to_wire(),
                self._variant_key(request, per_user, marker, params): stored.to_wire(),
            }
        else:
            values = {lookup.primary: stored.to_wire()}
        await cache.awrite(values, ttl=ttl, stale_ttl=stale, snapshot=lookup.snapshot)
