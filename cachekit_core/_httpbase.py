"""Framework-neutral HTTP response caching: the data types and pure steps both adapters use.

The I/O half (lookup, store, invalidate) is in ``_async/httpcache.py`` and its sync twin.

Storage layout: the *primary* key covers method class, scheme, host, path, sorted query (and
the user for per-user views). It holds the response itself when the response has no ``Vary``,
else a marker listing the Vary names and a random generation; the response then sits under a
*secondary* key that adds those request headers and the generation. Deleting the primary
entry (an unsafe method on the URL) thus orphans every variant at once.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import http
from .cache import Cache
from .entry import Entry

Headers = list[tuple[str, str]]

HIT, MISS, STALE, BYPASS = (
    http.X_CACHE_HIT,
    http.X_CACHE_MISS,
    http.X_CACHE_STALE,
    http.X_CACHE_BYPASS,
)


@dataclass(slots=True)
class Request:
    """What the cache needs to know of a request (adapters fill it from theirs)."""

    method: str
    scheme: str
    host: str
    path: str
    query: str
    headers: Sequence[tuple[str, str]]
    user: str | None = None  # the user id, for per-user views


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """How a decorated view asked to be cached."""

    ttl: float | None = None  # None: s-maxage/max-age of cache_control, else the cache default
    tags: tuple[str, ...] = ()
    cache_control: str | None = None  # set on responses that carry no Cache-Control of their own
    stale_ttl: float = 0.0  # serve STALE that long past expiry (one request re-renders)
    per_user: bool = False


@dataclass(frozen=True, slots=True)
class HttpSettings:
    header_name: str | None = "X-Cache"  # None: no X-Cache header at all
    cdn_cache_control: str | None = None  # e.g. "max-age=600": sent on public cached responses
    honour_request_no_cache: bool = False  # ignored by default, as CDNs do (R5)
    max_body_size: int = 1 << 20  # larger bodies pass through, unbuffered and unstored (S11)
    cacheable_statuses: frozenset[int] = frozenset({200})
    session_cookie: str | None = None  # requests carrying it bypass unless per_user (S9)
    shared_cache: bool = False  # also store undecorated responses by their own headers


@dataclass(slots=True)
class Lookup:
    """The outcome of a lookup: serve ``response`` as is, or render and call ``store``."""

    request: Request
    view: ViewOptions | None
    state: str  # HIT / STALE: response is ready; MISS / BYPASS: render the view
    response: Response | None = None
    primary: str = ""
    stale: dict[str, Any] | None = None  # a stale stored copy, for stale-if-error
    marker: dict[str, Any] | None = None  # the Vary marker found under the primary key
    claim: str | None = None  # this request re-renders a stale entry (lock token)
    # Tag snapshot taken before rendering: an invalidation landing meanwhile leaves the
    # stored page stale at once (no stale write-back race).
    gens: tuple[int, ...] = ()
    versions: list[int] | None = field(default_factory=list)


class HttpCacheBase:
    def __init__(self, cache: Cache, settings: HttpSettings | None = None) -> None:
        self.cache = cache
        self.settings = settings or HttpSettings()
        # memory-only re-render claims: key -> (expiry, owner token)
        self._claims: dict[str, tuple[float, str]] = {}

    # -- keys ----------------------------------------------------------------------------------
    def _primary_key(self, request: Request, per_user: bool) -> str:
        user = f"user={request.user}" if per_user else ""
        return "http:" + http.request_cache_key(
            request.method, request.scheme, request.host, request.path, request.query, (),
            request.headers, extra=user,
        )  # fmt: skip

    def _variant_key(self, request: Request, per_user: bool, marker: dict[str, Any]) -> str:
        user = f"user={request.user}" if per_user else ""
        return "http:" + http.request_cache_key(
            request.method, request.scheme, request.host, request.path, request.query,
            tuple(marker["vary"]), request.headers, extra=f"{user}|{marker['gen']}",
        )  # fmt: skip

    def bypass_reason(self, request: Request, view: ViewOptions | None) -> str | None:
        """Why this request must not be answered from (or stored in) the cache."""
        per_user = view is not None and view.per_user
        if per_user and request.user is None:
            return "per-user view without a user"
        if http.get_all(request.headers, "if-match") or http.get_all(
            request.headers, "if-unmodified-since"
        ):
            return "precondition for the app"  # C6: the app evaluates these, never the cache
        return http.request_bypass(
            request.method,
            request.headers,
            session_cookie=None if per_user else self.settings.session_cookie,
            per_user=per_user,
            honour_request_no_cache=self.settings.honour_request_no_cache,
        )

    # -- serving -------------------------------------------------------------------------------
    def _serve(self, request: Request, stored: dict[str, Any], state: str) -> Response:
        """A stored response as sent: current Age, X-Cache, 304 or HEAD handled (R1, R2, K7)."""
        drop = {"age"}
        if self.settings.header_name:
            drop.add(self.settings.header_name.lower())
        headers = [(k, v) for k, v in stored["h"] if k.lower() not in drop]
        headers.append(("Age", http.age_header(stored["t"], self.cache._clock())))
        return self._finish(request, Response(stored["s"], headers, stored["b"]), state)

    def _finish(self, request: Request, response: Response, state: str) -> Response:
        """Add X-Cache, then answer 304 or strip the body of a HEAD as the request asks."""
        if self.settings.header_name:
            response.headers = [
                (k, v)
                for k, v in response.headers
                if k.lower() != self.settings.header_name.lower()
            ]
            response.headers.append((self.settings.header_name, state))
        if http.not_modified(request.method, request.headers, response.status, response.headers):
            return Response(304, http.not_modified_headers(response.headers), b"")
        if request.method == "HEAD":
            return Response(response.status, response.headers, b"")
        return response

    # -- storing -------------------------------------------------------------------------------
    def _prepare(self, lookup: Lookup, response: Response) -> tuple[float, float, float] | None:
        """Add validators and declared headers; if the response may be stored, return
        (ttl, seconds to keep it past freshness, seconds it may be served STALE)."""
        view, request, settings = lookup.view, lookup.request, self.settings
        headers = response.headers
        if (
            200 <= response.status < 300
            and request.method in ("GET", "HEAD")
            and response.body
            and not http.get_all(headers, "etag")
        ):
            headers.append(("ETag", http.strong_etag(response.body)))  # C10, C11
        if view is not None:
            if view.cache_control and not http.get_all(headers, "cache-control"):
                headers.append(("Cache-Control", view.cache_control))
            if view.per_user:
                _set(headers, "Cache-Control", http.patch_cache_control(
                    http.get_one(headers, "cache-control"), private=True
                ))  # fmt: skip
        if lookup.state == BYPASS or (view is None and not settings.shared_cache):
            return None
        if len(response.body) > settings.max_body_size:
            return None
        per_user = view is not None and view.per_user
        decision = http.storable(
            response.status,
            headers,
            method=request.method,
            shared=not per_user,
            origin_driven=view is None,
            cacheable_statuses=settings.cacheable_statuses,
            request_has_authorization=bool(http.get_one(request.headers, "authorization")),
            now=self.cache._clock(),
        )
        if not decision.ok:
            return None
        cc = decision.cache_control or http.response_cache_control(headers)
        if settings.cdn_cache_control and not per_user and not cc.private:
            _set(headers, "CDN-Cache-Control", settings.cdn_cache_control)
        if view is None:  # shared-cache mode: the response's own freshness rules (S16)
            if not decision.ttl:
                return None
            swr, sie = decision.stale_while_revalidate, decision.stale_if_error
            return decision.ttl, max(swr, sie), swr
        ttl = view.ttl
        if ttl is None:
            ttl = cc.s_maxage if cc.s_maxage is not None and not per_user else cc.max_age
        if ttl is None:
            ttl = self.cache.default_ttl
        return (float(ttl) if ttl is not None else 300.0), view.stale_ttl, view.stale_ttl

    def _stored(self, response: Response, revalidate_window: float) -> dict[str, Any]:
        drop = (self.settings.header_name,) if self.settings.header_name else ()
        headers = http.strip_for_storage(response.headers, drop=drop)
        now = self.cache._clock()
        if not http.get_all(headers, "date"):
            headers.append(("Date", http.http_date(now)))  # R2: served unchanged
        # "w": how long past freshness it may be served STALE while one request re-renders;
        # the entry itself lives longer when stale-if-error allows more (error fallback only).
        return {"s": response.status, "h": [list(h) for h in headers], "b": response.body,
                "t": now, "w": revalidate_window}  # fmt: skip

    def _stale_for_error(self, lookup: Lookup, response: Response) -> Response | None:
        """stale-if-error: a 5xx with a stale copy at hand serves the copy instead."""
        if response.status < 500 or lookup.stale is None:
            return None
        return self._serve(lookup.request, lookup.stale, STALE)

    def _claim_local(self, key: str, seconds: float) -> str | None:
        now = time.monotonic()
        current = self._claims.get(key)
        if current is not None and current[0] > now:
            return None
        if len(self._claims) > 10_000:
            self._claims = {k: c for k, c in self._claims.items() if c[0] > now}
        token = secrets.token_hex(8)
        self._claims[key] = (now + seconds, token)
        return token

    def _release_local(self, key: str, token: str) -> None:
        # Only the claim's owner releases it: a late release must not free someone else's.
        current = self._claims.get(key)
        if current is not None and current[1] == token:
            del self._claims[key]

    def _entry_state(self, entry: Entry | None) -> str | None:
        if entry is None:
            return None
        return HIT if self.cache._clock() < entry.fresh_until else STALE

    def _revalidating(self, entry: Entry, stored: dict[str, Any]) -> bool:
        """Whether a stale copy is still inside its serve-STALE window (not just kept for
        stale-if-error)."""
        window = stored.get("w", entry.stale_until - entry.fresh_until)
        return bool(self.cache._clock() < entry.fresh_until + window)


def _set(headers: Headers, name: str, value: str) -> None:
    lower = name.lower()
    headers[:] = [(k, v) for k, v in headers if k.lower() != lower]
    headers.append((name, value))
