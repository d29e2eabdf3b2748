"""HTTP response caching I/O, written once as async code (the sync twin is generated)."""

from __future__ import annotations

import contextlib
import secrets
import time

from ... import http
from ..._concurrency import Abandoned, async_sleep
from ...entry import Entry
from ...exceptions import SerializationError
from ...results import ReadStatus, now_us
from .._base import (
    BYPASS,
    HIT,
    HIT_FOR_MISS,
    MISS,
    STALE,
    HttpCacheBase,
    Lookup,
    Request,
    Response,
    StoredResponse,
    VaryMarker,
    ViewOptions,
    is_hit_for_miss,
)


class AsyncHttpCache(HttpCacheBase):
    async def alookup(
        self, request: Request, view: ViewOptions | None = None, *, since: int = 0
    ) -> Lookup:
        """Find a stored response for ``request`` (``view``: the decorated view's options, or
        None in shared-cache mode). Render the view unless the state is HIT or STALE.

        The lookup's time is the request's start for the race guards: a page rendered for it
        is not stored if its URL is invalidated, or one of its tags, after this call (even
        when the view's tags are bound later, after the app's dependencies ran). ``since``:
        that start (``results.now_us()``) when the lookup is made later than it, e.g. only
        once the app's dependencies ran; 0: now."""
        return await self._afind(Lookup(request, view, MISS, since=since or now_us()))

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
            # The first key's claim is not this view's any more (and says nothing of its page).
            await self._arelease(lookup, hit_for_miss=False)
            return await self._afind(Lookup(lookup.request, view, MISS, since=lookup.since))
        lookup.view = view
        if lookup.state != BYPASS:
            await self._asnapshot(lookup)
            if lookup.state == MISS and lookup.claim is None and not lookup.coalesced:
                # The key is final now: concurrent misses on it render once.
                await self._await_lock_owner(lookup, True)
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
        # A decorated view's misses coalesce (in shared-cache mode, any response may be
        # stored under this key). Before a view is bound its key may still change (per-user,
        # query_params): abind_view coalesces then, and undecorated routes never wait.
        await self._await_lock_owner(lookup, view is not None or self.settings.shared_cache)
        return lookup

    async def _await_lock_owner(self, lookup: Lookup, coalesce: bool) -> None:
        """Settle ``lookup``: served (HIT, STALE), or a MISS to render. With ``coalesce``, a
        missing page is rendered by the request that claims its key; the others re-read the
        key with backoff until it is stored (HIT), marked hit-for-miss (render at once), or
        ``lock_wait`` has passed (render without the claim: its owner is slow or gone).

        Within a process only one request per page does that polling: the others wait for
        it in process (a burst of threads or tasks would otherwise flood Redis with reads and
        claim attempts, and the timeouts that follow would open the breaker)."""
        lookup.coalesced = lookup.coalesced or coalesce
        if not coalesce:
            await self._aclaim(lookup, coalesce)
            return
        cache = self.cache
        deadline = time.monotonic() + cache.lock_wait  # never wait past it, in all
        leader, flight = self._aflights.join(lookup.primary)
        if not leader:
            # At most as long as the leader's claim lives: a leader that vanished without
            # releasing (a killed thread) holds up nobody longer than a crashed process would.
            with contextlib.suppress(TimeoutError, Abandoned):
                await flight.wait(min(cache.lock_wait, cache.lock_ttl))
            await self._apoll(lookup, deadline)  # usually one read: the page just stored
            return
        try:
            await self._apoll(lookup, deadline)
        except BaseException:
            self._end_flight(lookup.primary, flight, Abandoned())
            raise
        if lookup.leads:
            lookup.flight = flight  # this request renders: the flight ends when it stored
        else:
            self._end_flight(lookup.primary, flight)

    async def _apoll(self, lookup: Lookup, deadline: float) -> None:
        """Claim or wait (see ``_await_lock_owner``), polling Redis with backoff."""
        if await self._aclaim(lookup, True):
            return
        delay = 0.002
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await async_sleep(min(delay, left))
            delay = min(delay * 2, 0.05)
            if await self._aclaim(lookup, True):
                return

    async def _aread(self, lookup: Lookup) -> tuple[str, Entry | None, bool]:
        """One read of the page: the key it lives under (the variant's, past a Vary marker),
        its entry, and whether Redis could not be asked."""
        cache, request, view = self.cache, lookup.request, lookup.view
        read = await cache.aread(lookup.primary)
        unavailable = read.status is ReadStatus.UNAVAILABLE
        key, entry = lookup.primary, read.entry
        marker = VaryMarker.from_wire(entry.value) if entry is not None else None
        lookup.marker = marker
        if marker is not None:
            per_user = view is not None and view.per_user
            params = view.query_params if view is not None else None
            key = self._variant_key(request, per_user, marker, params)
            read = await cache.aread(key)
            unavailable = unavailable or read.status is ReadStatus.UNAVAILABLE
            entry = read.entry
        return key, entry, unavailable

    def _present(self, entry: Entry | None) -> bool:
        """Whether ``entry`` answers requests (a fresh page or marker, or a page still in its
        serve-STALE window) rather than leaving them to render."""
        if entry is None:
            return False
        if self.cache.clock() < entry.fresh_until:
            return True
        stored = StoredResponse.from_wire(entry.value)
        return stored is not None and self._revalidating(entry, stored)

    async def _aclaim(self, lookup: Lookup, coalesce: bool) -> bool:
        """One pass of ``_await_lock_owner``: True once the lookup is settled, False while
        another request holds the claim on the missing page (wait, then call again)."""
        cache, request = self.cache, lookup.request
        key, entry, unavailable = await self._aread(lookup)
        if entry is not None and is_hit_for_miss(entry.value):
            if cache.clock() < entry.fresh_until:
                return True  # MISS: its last render was not storable, render at once
            entry = None
        stored = StoredResponse.from_wire(entry.value) if entry is not None else None
        if stored is None or entry is None:
            if http.only_if_cached(request.headers):
                lookup.state, lookup.response = HIT, Response(504, [], b"")
                return True
        else:
            state = self._state_of(entry)
            if state == STALE:
                lookup.stale = stored
                if self._revalidating(entry, stored):
                    # One request re-renders; the others get STALE.
                    lookup.claim = await cache.aclaim(lookup.primary, cache.lock_ttl)
                    if lookup.claim is not None:
                        lookup.claim_key = lookup.primary
                        return True  # MISS: this request re-renders
                    lookup.state, lookup.response = state, self._serve(request, stored, state)
                    return True
                # Past its window: kept only as a stale-if-error fallback, a miss.
            else:
                lookup.state, lookup.response = state, self._serve(request, stored, state)
                return True
        if not coalesce or (unavailable and not cache.reachable()):
            return True  # MISS: render (Redis is down: nobody to wait for)
        token = await cache.aclaim(key, cache.lock_ttl)
        if token is None:
            return False
        # Re-read under the claim: its previous owner may have stored the page just now.
        again, entry, _ = await self._aread(lookup)
        if again == key and not self._present(entry):
            lookup.claim, lookup.claim_key, lookup.leads = token, key, True
            return True  # MISS: this request renders, the others wait for its page
        await cache.arelease(key, token)
        return False

    async def astore(
        self, lookup: Lookup, response: Response, *, personal: bool = False
    ) -> Response:
        """Finish a rendered response: validators, headers, storage, X-Cache, 304.
        ``personal``: the response is specific to this client (e.g. it wrote the session
        outside the cache's view): never store it, answer BYPASS."""
        stored = False
        try:
            fallback = self._stale_for_error(lookup, response)
            if fallback is not None:
                lookup.leads = False  # no hit-for-miss marker over the stale copy it serves
                return fallback
            if personal:
                lookup.state = BYPASS
            plan = self._prepare(lookup, response)
            if plan is not None:
                try:
                    await self._awrite(lookup, response, *plan)
                    stored = True
                except SerializationError as exc:  # e.g. too many tags: serve, don't store
                    self._not_stored(lookup, exc)
            return self._finish(lookup.request, response, lookup.state)
        finally:
            await self._arelease(lookup, hit_for_miss=not stored)

    async def arelease(self, lookup: Lookup) -> None:
        """This request will not store its response (it streamed, the app raised, nothing
        was sent): give up its claim. Requests waiting on a miss it was rendering are told
        to render for themselves (a hit-for-miss marker), not to wait for it. Safe to call
        twice; every path that does not call ``astore`` must call it."""
        await self._arelease(lookup, hit_for_miss=True)

    async def _arelease(self, lookup: Lookup, *, hit_for_miss: bool) -> None:
        token, lookup.claim = lookup.claim, None
        leads, lookup.leads = lookup.leads, False
        flight, lookup.flight = lookup.flight, None
        try:
            if token is None:
                return
            key = lookup.claim_key or lookup.primary
            try:
                ttl = self._hit_for_miss_ttl(lookup)
                if hit_for_miss and leads and ttl > 0:
                    snapshot = lookup.snapshot
                    # Not storable with its tags either (too many): the waiters time out.
                    with contextlib.suppress(SerializationError):
                        await self.cache.awrite({key: HIT_FOR_MISS}, ttl=ttl, snapshot=snapshot)
            finally:
                await self.cache.arelease(key, token)
        finally:
            if flight is not None:  # after the page (or its marker) is stored: wake the waiters
                self._end_flight(lookup.primary, flight)

    async def ainvalidate_url(
        self,
        request: Request,
        view: ViewOptions | None = None,
        response_headers: http.Headers = (),
    ) -> None:
        """Drop what is stored for this URL (R4: after an unsafe method succeeded). ``view``:
        the options of the view that handled it, if decorated: with ``query_params``, the
        page of the URL's listed parameters is dropped too. ``response_headers``: the
        response's, whose same-origin ``Location`` and ``Content-Location`` URLs are dropped
        as well (R10)."""
        probe = Request(
            "GET",
            request.scheme,
            request.host,
            request.path,
            request.query,
            [],
            request.user,
            request.variant,
        )
        keys = [self._primary_key(probe, False)]
        if request.user is not None:  # the user's own per-user page of this URL too
            keys.append(self._primary_key(probe, True))
        params = view.query_params if view is not None else None
        if params is not None:
            keys.append(self._primary_key(probe, False, params))
            if request.user is not None:
                keys.append(self._primary_key(probe, True, params))
        if response_headers:
            for path, query in http.invalidation_targets(
                request.scheme, request.host, request.path, request.query, response_headers
            ):
                probe.path, probe.query = path, query
                keys.append(self._primary_key(probe, False))
                if request.user is not None:
                    keys.append(self._primary_key(probe, True))
        await self.cache.adelete_many(list(dict.fromkeys(keys)))

    async def _awrite(
        self, lookup: Lookup, response: Response, ttl: float, stale: float, window: float
    ) -> None:
        cache, request, view = self.cache, lookup.request, lookup.view
        per_user = view is not None and view.per_user
        params = view.query_params if view is not None else None
        vary = http.parse_vary(http.get_all(response.headers, "vary"))
        assert vary != "*"  # storable() refused it
        stored = self._stored(response, window, origin_driven=view is None)
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
