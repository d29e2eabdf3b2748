"""HTTP response caching I/O, written once as async code (the sync twin is generated)."""

from __future__ import annotations

import secrets
from typing import Any

from .. import http
from .._httpbase import (
    BYPASS,
    HIT,
    MISS,
    STALE,
    HttpCacheBase,
    Lookup,
    Request,
    Response,
    ViewOptions,
)


class AsyncHttpCache(HttpCacheBase):
    async def alookup(self, request: Request, view: ViewOptions | None = None) -> Lookup:
        """Find a stored response for ``request`` (``view``: the decorated view's options, or
        None in shared-cache mode). Render the view unless the state is HIT or STALE."""
        return await self._afind(Lookup(request, view, MISS))

    async def abind_view(self, lookup: Lookup, view: ViewOptions) -> Lookup:
        """Attach the options of the view that is about to render (known only after routing,
        e.g. tags computed from path parameters) and snapshot its tags before it renders.
        A per-user view is looked up again under the user's key: check ``response``."""
        if view.per_user and not (lookup.view is not None and lookup.view.per_user):
            await self.arelease(lookup)  # the shared key's claim is not this view's any more
            return await self._afind(Lookup(lookup.request, view, MISS))
        lookup.view = view
        if lookup.state != BYPASS:
            await self._asnapshot(lookup)
        return lookup

    async def _asnapshot(self, lookup: Lookup) -> None:
        cache = self.cache
        tag_keys = cache._tag_keys(lookup.view.tags if lookup.view else ())
        lookup.gens = cache._snapshot_gens(tag_keys)
        lookup.versions = await cache._ashared_versions(tag_keys)

    async def _afind(self, lookup: Lookup) -> Lookup:
        request, view = lookup.request, lookup.view
        if self.bypass_reason(request, view) is not None:
            lookup.state = BYPASS
            return lookup
        per_user = view is not None and view.per_user
        lookup.primary = self._primary_key(request, per_user)
        await self._asnapshot(lookup)
        cache = self.cache
        entry = await cache._alookup(lookup.primary)
        stored: dict[str, Any] | None = entry.value if entry is not None else None
        state = self._entry_state(entry)
        if isinstance(stored, dict) and "vary" in stored:
            lookup.marker = stored
            entry = await cache._alookup(self._variant_key(request, per_user, stored))
            stored, state = (entry.value if entry is not None else None), self._entry_state(entry)
        if not isinstance(stored, dict) or "s" not in stored or state is None:
            if http.only_if_cached(request.headers):
                lookup.state, lookup.response = HIT, Response(504, [], b"")
            return lookup
        if state == STALE:
            lookup.stale = stored
            assert entry is not None
            if not self._revalidating(entry, stored):
                return lookup  # MISS: kept only as a stale-if-error fallback
            lookup.claim = await self._aclaim(lookup.primary)
            if lookup.claim is not None:
                return lookup  # MISS: this request re-renders; the others get STALE
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
                await self._awrite(lookup, response, *plan)
            return self._finish(lookup.request, response, lookup.state)
        finally:
            await self.arelease(lookup)

    async def arelease(self, lookup: Lookup) -> None:
        """Give up this request's claim to re-render a stale page (when it will not store:
        the response streamed, the app raised, nothing was sent). Safe to call twice."""
        token, lookup.claim = lookup.claim, None
        if token is None:
            return
        shared = self.cache._shared
        if shared is None:
            self._release_local(lookup.primary, token)
        else:
            await shared.arelease(self.cache._keys.lock(lookup.primary), token)

    async def ainvalidate_url(self, request: Request) -> None:
        """Drop what is stored for this URL (R4: after an unsafe method succeeded)."""
        probe = Request(
            "GET", request.scheme, request.host, request.path, request.query, [], request.user
        )
        keys = [self._primary_key(probe, False)]
        if request.user is not None:  # the user's own per-user page of this URL too
            keys.append(self._primary_key(probe, True))
        await self.cache.adelete_many(keys)

    async def _awrite(
        self, lookup: Lookup, response: Response, ttl: float, stale: float, window: float
    ) -> None:
        cache, request, view = self.cache, lookup.request, lookup.view
        per_user = view is not None and view.per_user
        vary = http.parse_vary(http.get_all(response.headers, "vary"))
        assert vary != "*"  # storable() refused it
        tag_keys = cache._tag_keys(view.tags if view else ())
        entries = {}
        stored = self._stored(response, window)
        if vary:
            marker = lookup.marker
            if marker is None or marker["vary"] != list(vary):
                # New Vary names start a new generation: variants keyed by the old names
                # can never be reached again.
                marker = {"vary": list(vary), "gen": secrets.token_hex(8)}
            entries[lookup.primary] = marker
            entries[self._variant_key(request, per_user, marker)] = stored
        else:
            entries[lookup.primary] = stored
        new = {}
        for key, value in entries.items():
            entry = cache._new_entry(value, ttl, stale, tag_keys, 0.0)
            if entry is not None:
                new[key] = entry
        await cache._awrite_entries(new, lookup.versions, lookup.gens)

    async def _aclaim(self, key: str) -> str | None:
        """Claim the re-render of a stale page: one request renders, the others get STALE."""
        shared = self.cache._shared
        if shared is None:
            return self._claim_local(key, self.cache.lock_ttl)
        token = secrets.token_hex(16)
        held = await shared.aacquire(self.cache._keys.lock(key), token, self.cache._lock_px)
        return token if held else None
