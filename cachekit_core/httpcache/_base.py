"""Framework-neutral HTTP response caching: the data types and pure steps both adapters use.

The I/O half (lookup, store, invalidate) is in ``_async/flow.py`` and its sync twin; both
use only the engine's public API (``read``, ``snapshot``, ``write``, ``claim``...).

Storage layout: the *primary* key covers method class, scheme, host, path, sorted query (and
the user for per-user views). It holds the response itself when the response has no ``Vary``,
else a marker listing the Vary names and a random generation; the response then sits under a
*secondary* key that adds those request headers and the generation. Deleting the primary
entry (an unsafe method on the URL) thus orphans every variant at once.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .. import http
from .._concurrency import AsyncFlight, AsyncFlights, SyncFlight, SyncFlights
from ..engine import Engine
from ..entry import Entry
from ..exceptions import ConfigurationError
from ..results import UNTAGGED, TagSnapshot
from ..throttle import Throttle

log = logging.getLogger("cachekit.http")

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
    # More of the key, from the adapter: what the page depends on beyond the URL (Django: the
    # active language and time zone, as its own cache_page keys them). "" for none.
    variant: str = ""


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers
    body: bytes = b""


@dataclass(slots=True)
class StoredResponse:
    """A response as the cache keeps it (on the wire: a small msgpack map, see ``to_wire``)."""

    status: int
    headers: Headers
    body: bytes
    stored_at: float  # epoch seconds: the Age sent is counted from here (R2)
    # How long past freshness it may be served STALE while one request re-renders; the entry
    # itself lives longer when stale-if-error allows more (error fallback only).
    revalidate_window: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        return {"s": self.status, "h": [list(h) for h in self.headers], "b": self.body,
                "t": self.stored_at, "w": self.revalidate_window}  # fmt: skip

    @classmethod
    def from_wire(cls, value: Any) -> StoredResponse | None:
        """The response stored as ``value``; None for anything else (a marker, junk)."""
        if not isinstance(value, dict) or "s" not in value:
            return None
        try:
            headers = [(str(k), str(v)) for k, v in value["h"]]
            return cls(int(value["s"]), headers, bytes(value["b"]), float(value["t"]),
                       float(value.get("w", 0.0)))  # fmt: skip
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class VaryMarker:
    """Stored under the primary key of a response with ``Vary``: the names it varies on, and
    a random generation that the variants' keys include (new names, new generation)."""

    vary: tuple[str, ...]
    gen: str

    def to_wire(self) -> dict[str, Any]:
        return {"vary": list(self.vary), "gen": self.gen}

    @classmethod
    def from_wire(cls, value: Any) -> VaryMarker | None:
        if not isinstance(value, dict) or "vary" not in value:
            return None
        try:
            return cls(tuple(str(v) for v in value["vary"]), str(value["gen"]))
        except (KeyError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """How a decorated view asked to be cached.

    ``query_params``: the query parameters that are part of the page's key (any collection
    of names; kept as a frozenset). Every other parameter is ignored for caching: the request
    is answered from, or stored as, the page of its listed parameters, so junk parameters
    (``utm_*``, ``?x=<random>``) cannot make one variant each. The view must then not depend
    on the parameters left out (a page that echoed one would be served, echo included, to
    every request of the same listed parameters). Names are matched decoded, as the view
    reads them (``p%61ge`` is ``page``). None (the default): every parameter is part of it.
    """

    ttl: float | None = None  # None: s-maxage/max-age of cache_control, else the cache default
    tags: tuple[str, ...] = ()
    cache_control: str | None = None  # set on responses that carry no Cache-Control of their own
    stale_ttl: float = 0.0  # serve STALE that long past expiry (one request re-renders)
    per_user: bool = False
    query_params: Collection[str] | None = None

    def __post_init__(self) -> None:
        names = self.query_params
        if names is not None:
            object.__setattr__(self, "query_params", query_allow_list(names))


def query_allow_list(names: Iterable[str] | None) -> frozenset[str] | None:
    """A ``query_params=`` allow-list checked and frozen (what adapters call once, when a
    view is decorated): ``TypeError`` for one string or a name that is not a string."""
    if names is None or (type(names) is frozenset and all(type(n) is str for n in names)):
        return names
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise TypeError(
            f"query_params must be a list of parameter names, not {names!r} "
            "(e.g. query_params=['page', 'sort'])"
        )
    found = frozenset(names)
    wrong = [n for n in found if not isinstance(n, str)]
    if wrong:
        raise TypeError(f"query_params names must be strings, not {wrong[0]!r}")
    return found


STORABLE_STATUSES = frozenset(range(200, 400)) - {206, 304}


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """How the HTTP cache behaves: the one definition of these settings for every adapter.

    Values are checked on construction (``ConfigurationError`` naming the field); an empty
    string for ``header_name``, ``cdn_cache_control`` or ``session_cookie`` means None, and
    ``cacheable_statuses`` may be any collection of final 2xx/3xx statuses the cache can
    store (S2: never 206 or 304; kept as a frozenset).
    ``from_mapping`` builds one from UPPER_CASE keys (Django's ``CACHEKIT["HTTP"]``).
    """

    header_name: str | None = "X-Cache"  # None: no X-Cache header at all
    cdn_cache_control: str | None = None  # e.g. "max-age=600": sent on public cached responses
    honour_request_no_cache: bool = False  # ignored by default, as CDNs do (R5)
    max_body_size: int = 1 << 20  # larger bodies pass through, unbuffered and unstored (S11)
    cacheable_statuses: frozenset[int] = frozenset({200})
    session_cookie: str | None = None  # requests carrying it bypass unless per_user (S9)
    shared_cache: bool = False  # also store undecorated responses by their own headers
    # X-Cache-Reason on every response the cache handled: why it was a MISS / BYPASS / not
    # stored (R11). Off by default: it tells anyone why a page was not served from storage,
    # e.g. ``expired`` says another client requested it before.
    debug_headers: bool = False
    # Read Surrogate-Control (W3C Edge Architecture) as this cache's Cache-Control, and remove
    # it before the response leaves (S19). False: ignore it and pass it on (a CDN in front).
    surrogate_control: bool = True

    _TOKEN: ClassVar[re.Pattern[str]] = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

    def __post_init__(self) -> None:
        for name in ("header_name", "cdn_cache_control", "session_cookie"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise self._invalid(name, value, "must be a string or None")
            if value == "":
                object.__setattr__(self, name, None)  # "" or None: not set
        if self.header_name is not None and not self._TOKEN.fullmatch(self.header_name):
            raise self._invalid("header_name", self.header_name, "must be a header field name")
        cdn = self.cdn_cache_control
        if cdn is not None and any(ord(c) < 32 or ord(c) == 127 for c in cdn):
            raise self._invalid("cdn_cache_control", cdn, "must not contain control characters")
        for name in ("honour_request_no_cache", "shared_cache", "debug_headers",
                     "surrogate_control"):  # fmt: skip
            if not isinstance(getattr(self, name), bool):
                raise self._invalid(name, getattr(self, name), "must be True or False")
        size = self.max_body_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise self._invalid("max_body_size", size, "must be an integer >= 0")
        statuses: object = self.cacheable_statuses
        values: tuple[object, ...] | None = None
        if isinstance(statuses, Iterable) and not isinstance(statuses, str | bytes | Mapping):
            values = tuple(statuses)
        # S2: a stored 1xx, 206, 304, 4xx or 5xx is a cache-poisoning vector (CPDoS), and
        # storable() never stores one: refuse to list them rather than ignore them silently.
        if values is None or not all(
            isinstance(s, int) and not isinstance(s, bool) and s in STORABLE_STATUSES
            for s in values
        ):
            raise self._invalid(
                "cacheable_statuses",
                statuses,
                "must be a collection of 2xx/3xx statuses other than 206 and 304",
            )
        object.__setattr__(self, "cacheable_statuses", frozenset(values))

    @staticmethod
    def _invalid(name: str, value: object, problem: str) -> ConfigurationError:
        """The error for a bad value of field ``name`` (its UPPER_CASE key named too)."""
        return ConfigurationError(f"HTTP setting {name} ({name.upper()}) {problem}, not {value!r}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The settings' names, as keyword arguments take them."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any], /, **overrides: Any) -> HttpSettings:
        """Settings from UPPER_CASE keys (``{"MAX_BODY_SIZE": 65536, "HEADER_NAME": None}``);
        absent keys keep their defaults. ``overrides`` (field names) are fields the caller
        sets itself, e.g. Django's ``session_cookie`` from ``SESSION_COOKIE_NAME``: the mapping
        may not set those. An unknown key raises ``ConfigurationError`` listing the valid ones."""
        names = cls.field_names()
        wrong = sorted(set(overrides) - set(names))
        if wrong:
            raise TypeError(f"HttpSettings.from_mapping() got unknown settings {wrong}")
        if not isinstance(config, Mapping):
            raise ConfigurationError(f"HTTP settings must be a mapping, not {config!r}")
        valid = [name.upper() for name in names if name not in overrides]
        options: dict[str, Any] = {}
        for key, value in config.items():
            if key not in valid:
                raise ConfigurationError(
                    f"unknown HTTP setting {key!r}; valid keys: {', '.join(valid)}"
                )
            options[key.lower()] = value
        return cls(**options, **overrides)


@dataclass(slots=True)
class Lookup:
    """The outcome of a lookup: serve ``response`` as is, or render and call ``store``."""

    request: Request
    view: ViewOptions | None
    state: str  # HIT / STALE: response is ready; MISS / BYPASS: render the view
    response: Response | None = None
    primary: str = ""
    stale: StoredResponse | None = None  # a stale stored copy, for stale-if-error
    marker: VaryMarker | None = None  # the Vary marker found under the primary key
    claim: str | None = None  # this request re-renders a stale entry (claim token)
    # Tag snapshot taken before rendering: an invalidation landing meanwhile leaves the
    # stored page stale at once (no stale write-back race).
    snapshot: TagSnapshot = UNTAGGED
    # When the lookup was made (results.now_us; 0: unknown): an invalidation of the URL or of
    # a tag after it refuses the rendered page, wherever the view's tags are bound.
    since: int = 0
    # Why this request was a MISS or BYPASS, when the flow or an adapter knows better than
    # ``_prepare`` can tell (e.g. ``uncommitted-writes``); "": ``_prepare`` decides (R11).
    reason: str = ""
    # Coalescing (concurrent misses on one key render once): the key ``claim`` holds (""
    # while none), whether this request renders for others waiting on a miss (when its
    # response is not stored, it leaves a hit-for-miss marker so they render for themselves),
    # and whether the claim-or-wait step already ran for this lookup.
    claim_key: str = ""
    leads: bool = False
    coalesced: bool = False
    # The in-process flight this lookup leads (the other requests of this process for the
    # same page wait on it instead of polling Redis); finished when its claim is released.
    flight: Any = None


#: Stored under a page's key when its rendered response could not be stored (Varnish's
#: "hit-for-miss"): requests that find it render at once, without waiting on a claim, and
#: may store what they render (a storable response replaces it). Kept for
#: ``min(ttl, HIT_FOR_MISS_TTL)`` seconds.
HIT_FOR_MISS: dict[str, Any] = {"hfm": 1}
HIT_FOR_MISS_TTL = 10.0


def is_hit_for_miss(value: Any) -> bool:
    return isinstance(value, dict) and value.get("hfm") == 1 and "s" not in value


class HttpCacheBase:
    def __init__(self, cache: Engine, settings: HttpSettings | None = None) -> None:
        self.cache = cache
        self.settings = settings or HttpSettings()
        self._store_log = Throttle()
        # One waiter per process (and event loop) polls Redis for a page being rendered
        # elsewhere; the process's other requests for it wait here, costing Redis nothing.
        self._flights = SyncFlights()
        self._aflights = AsyncFlights()

    def _end_flight(
        self, key: str, flight: SyncFlight | AsyncFlight, error: BaseException | None = None
    ) -> None:
        """Wake the requests waiting on ``flight``, whichever side made it: a lookup made on an
        event loop may be released from a thread (Django runs sync views in one), and the
        reverse."""
        if isinstance(flight, SyncFlight):
            self._flights.finish(key, flight, error=error)
            return
        loop = flight.future.get_loop()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._aflights.finish(key, flight, error=error)
        elif not loop.is_closed():  # a future is only ever completed on its own loop
            loop.call_soon_threadsafe(self._aflights.finish, key, flight, None, error)

    # -- keys ----------------------------------------------------------------------------------
    # ``params``: the view's query-parameter allow-list (None: the whole query is keyed).
    def _primary_key(
        self, request: Request, per_user: bool, params: Collection[str] | None = None
    ) -> str:
        user = f"user={request.user}" if per_user else ""
        if request.variant:
            user += f"|{request.variant}"
        return "http:" + http.request_cache_key(
            request.method, request.scheme, request.host, request.path, request.query, (),
            request.headers, extra=user, query_params=params,
        )  # fmt: skip

    def _variant_key(
        self,
        request: Request,
        per_user: bool,
        marker: VaryMarker,
        params: Collection[str] | None = None,
    ) -> str:
        user = f"user={request.user}" if per_user else ""
        if request.variant:
            user += f"|{request.variant}"
        return "http:" + http.request_cache_key(
            request.method, request.scheme, request.host, request.path, request.query,
            marker.vary, request.headers, extra=f"{user}|{marker.gen}", query_params=params,
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
    def _serve(
        self, request: Request, stored: StoredResponse, state: str, reason: str | None = None
    ) -> Response:
        """A stored response as sent: current Age, X-Cache, 304 or HEAD handled (R1, R2, K7).
        ``reason``: the X-Cache-Reason debug value (R11); by default ``fresh`` for a HIT,
        ``stale-while-revalidate`` for STALE."""
        drop = {"age", "surrogate-control"}
        if self.settings.header_name:
            drop.add(self.settings.header_name.lower())
        if self.settings.debug_headers:
            drop.add(http.X_CACHE_REASON_HEADER.lower())
        headers = [(k, v) for k, v in stored.headers if k.lower() not in drop]
        # stored_at already counts the age the response arrived with (R9).
        headers.append(("Age", http.age_header(stored.stored_at, self.cache.clock())))
        if reason is None:
            reason = "fresh" if state == HIT else "stale-while-revalidate"
        return self._finish(request, Response(stored.status, headers, stored.body), state, reason)

    def _finish(
        self, request: Request, response: Response, state: str, reason: str | None = None
    ) -> Response:
        """Add X-Cache (and X-Cache-Reason when ``debug_headers`` and a ``reason`` is given),
        drop Surrogate-Control (S19), then answer 304 or strip the body of a HEAD as the
        request asks. A 304 keeps what RFC 9110 §15.4.5 asks of it, and these headers (C7)."""
        settings = self.settings
        name = settings.header_name
        keep: list[str] = []
        if settings.surrogate_control or name:
            drop = {name.lower()} if name else set()
            if settings.surrogate_control:
                drop.add("surrogate-control")
            response.headers = [(k, v) for k, v in response.headers if k.lower() not in drop]
        if name:
            response.headers.append((name, state))
            keep.append(name)
        if settings.debug_headers:
            keep.append(http.X_CACHE_REASON_HEADER)
            if reason is not None:
                _set(response.headers, http.X_CACHE_REASON_HEADER, reason)
        if http.not_modified(request.method, request.headers, response.status, response.headers):
            return Response(304, http.not_modified_headers(response.headers, keep=keep), b"")
        if request.method == "HEAD":
            return Response(response.status, response.headers, b"")
        return response

    # -- storing -------------------------------------------------------------------------------
    def _prepare(self, lookup: Lookup, response: Response) -> tuple[float, float, float] | None:
        """Add validators and declared headers; if the response may be stored, return
        (ttl, seconds to keep it past freshness, seconds it may be served STALE).

        Also decides why (R11): ``lookup.reason`` is set (when the flow left it empty) and,
        with ``debug_headers``, sent as X-Cache-Reason."""
        plan, reason = self._plan(lookup, response)
        lookup.reason = reason
        if self.settings.debug_headers:
            _set(response.headers, http.X_CACHE_REASON_HEADER, reason)
        return plan

    def _miss_reason(self, lookup: Lookup) -> str:
        """Why the lookup found nothing to serve: ``expired`` (a stale copy was found),
        ``vary-miss`` (other variants of the URL are stored, not this one), ``cold``
        (nothing: never stored, evicted, or invalidated; the engine does not say which)."""
        if lookup.reason:
            return lookup.reason
        if lookup.stale is not None:
            return "expired"
        return "vary-miss" if lookup.marker is not None else "cold"

    def _plan(
        self, lookup: Lookup, response: Response
    ) -> tuple[tuple[float, float, float] | None, str]:
        view, request, settings = lookup.view, lookup.request, self.settings
        headers = response.headers
        if (
            200 <= response.status < 300
            and request.method in ("GET", "HEAD")
            and response.body
            and not http.get_all(headers, "etag")
        ):
            headers.append(("ETag", http.strong_etag(response.body)))  # C10, C11
        per_user = view is not None and view.per_user
        if view is not None:
            if view.cache_control and not http.get_all(headers, "cache-control"):
                headers.append(("Cache-Control", view.cache_control))
            if per_user:
                _set(headers, "Cache-Control", http.patch_cache_control(
                    http.get_one(headers, "cache-control"), private=True
                ))  # fmt: skip
            if response.status == 304:
                self._cdn_cache_control(headers, per_user)  # C7: as its 200 would carry
        if lookup.state == BYPASS:
            if lookup.reason:
                return None, lookup.reason
            why = self.bypass_reason(request, view)
            # None: the adapter said the response is personal (astore(personal=True)).
            return None, "personal" if why is None else http.bypass_code(why)
        if view is None and not settings.shared_cache:
            return None, "undecorated"
        if len(response.body) > settings.max_body_size:
            return None, "too-large"
        decision = http.storable(
            response.status,
            headers,
            method=request.method,
            shared=not per_user,
            origin_driven=view is None,
            cacheable_statuses=settings.cacheable_statuses,
            request_has_authorization=bool(http.get_one(request.headers, "authorization")),
            now=self.cache.clock(),
            surrogate=settings.surrogate_control,
        )
        if not decision.ok:
            return None, decision.code
        cc = decision.cache_control or http.response_cache_control(headers)
        self._cdn_cache_control(headers, per_user, cc)
        reason = self._miss_reason(lookup)
        if lookup.snapshot.stale:
            # A tag was invalidated while the page rendered: the engine will not keep it.
            reason = "tag-invalidated"
        if view is None:  # shared-cache mode: the response's own freshness rules (S16)
            if not decision.ttl:
                return None, "already-stale"
            swr, sie = decision.stale_while_revalidate, decision.stale_if_error
            return (decision.ttl, max(swr, sie), swr), reason
        ttl = view.ttl
        if ttl is None and decision.surrogate is not None:
            ttl = decision.surrogate.max_age  # S19: Surrogate-Control speaks to this cache
        if ttl is None:
            ttl = cc.s_maxage if cc.s_maxage is not None and not per_user else cc.max_age
        if ttl is None:
            ttl = self.cache.default_ttl
        plan = (float(ttl) if ttl is not None else 300.0), view.stale_ttl, view.stale_ttl
        return plan, reason

    def _cdn_cache_control(
        self, headers: Headers, per_user: bool, cc: http.CacheControl | None = None
    ) -> None:
        """CDN-Cache-Control, when configured, on a response a CDN may keep (R7)."""
        if not self.settings.cdn_cache_control or per_user:
            return
        if cc is None:
            cc = http.response_cache_control(headers)
        if not (cc.private or cc.no_store):
            _set(headers, "CDN-Cache-Control", self.settings.cdn_cache_control)

    def _stored(
        self, response: Response, revalidate_window: float, *, origin_driven: bool = False
    ) -> StoredResponse:
        """The response as kept: no hop-by-hop or Connection-named fields (S17), no X-Cache,
        X-Cache-Reason or Surrogate-Control. ``origin_driven`` (shared-cache mode, where the
        TTL already counted it): ``stored_at`` is moved back by the age the response arrived
        with (RFC 9111 §4.2.3), so the Age sent is that age plus the time spent here (R9). A
        decorated view is the origin: its page is 0 s old when stored (R1)."""
        settings = self.settings
        drop = [settings.header_name] if settings.header_name else []
        if settings.debug_headers:
            drop.append(http.X_CACHE_REASON_HEADER)
        if settings.surrogate_control:
            drop.append("Surrogate-Control")
        headers = http.strip_for_storage(response.headers, drop=drop)
        now = self.cache.clock()
        if not http.get_all(headers, "date"):
            headers.append(("Date", http.http_date(now)))  # R2: served unchanged
        initial_age = http.current_age(response.headers, now) if origin_driven else 0.0
        return StoredResponse(
            response.status, headers, response.body, now - initial_age, revalidate_window
        )

    def _not_stored(self, lookup: Lookup, exc: Exception) -> None:
        if self._store_log.ready():
            log.warning(
                "cachekit: response to %s %s not stored: %s",
                lookup.request.method,
                lookup.request.path,
                exc,
            )

    def _stale_for_error(self, lookup: Lookup, response: Response) -> Response | None:
        """stale-if-error: a 5xx with a stale copy at hand serves the copy instead."""
        if response.status < 500 or lookup.stale is None:
            return None
        return self._serve(lookup.request, lookup.stale, STALE, "stale-if-error")

    def _hit_for_miss_ttl(self, lookup: Lookup) -> float:
        view = lookup.view
        ttl = view.ttl if view is not None and view.ttl is not None else self.cache.default_ttl
        return HIT_FOR_MISS_TTL if ttl is None else min(float(ttl), HIT_FOR_MISS_TTL)

    def _state_of(self, entry: Entry) -> str:
        return HIT if self.cache.clock() < entry.fresh_until else STALE

    def _revalidating(self, entry: Entry, stored: StoredResponse) -> bool:
        """Whether a stale copy is still inside its serve-STALE window (not just kept for
        stale-if-error)."""
        return self.cache.clock() < entry.fresh_until + stored.revalidate_window


def _set(headers: Headers, name: str, value: str) -> None:
    lower = name.lower()
    headers[:] = [(k, v) for k, v in headers if k.lower() != lower]
    headers.append((name, value))
