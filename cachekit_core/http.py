"""Sans-I/O HTTP caching rules shared by Django and ASGI adapters (rule ids: docs/HTTP-RULES.md).

Everything here is a pure function over plain data: headers are ``Sequence[tuple[str, str]]``
(ordered, names in any case, repeated names allowed, values decoded as latin-1). Nothing does
I/O or imports a web framework, and no parser raises on hostile input: a value that cannot be
read unambiguously makes a response *not storable* rather than crashing the request.

Choices where RFC 9111/9110 leave room:

- Repeated delta-seconds directive (RFC 9111 §4.2.1 "first, or stale"): identical repeats are
  accepted, differing ones mark the field ``malformed`` (treated as stale: not stored), so two
  caches can never disagree about which copy counts.
- Unbalanced quotes in ``Cache-Control`` mark it ``malformed``: a directive hidden in, or leaking
  out of, a quoted string is the classic parser-differential.
- Restrictive directives (``no-store``, ``no-cache``, ``private``, ``must-revalidate`` ...) count
  even with an unexpected argument; permissive ones (``public``, ``immutable``) only when bare.
- HEAD responses are never stored (a stored GET answers HEAD), so a HEAD miss cannot plant an
  empty body that a later GET would receive (K7).
- ``Pragma: no-cache`` is honoured (when configured) only when the request has no
  ``Cache-Control``, as RFC 7234 §5.4 specified.
"""

from __future__ import annotations

import calendar
import math
import re
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from hashlib import blake2b
from typing import Literal
from urllib.parse import unquote, unquote_to_bytes, urljoin, urlsplit

__all__ = [
    "MAX_DELTA",
    "X_CACHE_BYPASS",
    "X_CACHE_HEADER",
    "X_CACHE_HIT",
    "X_CACHE_MISS",
    "X_CACHE_REASON_HEADER",
    "X_CACHE_STALE",
    "CacheControl",
    "Headers",
    "StoreDecision",
    "age_header",
    "bypass_code",
    "current_age",
    "etag_matches_if_none_match",
    "format_cache_control",
    "freshness_lifetime",
    "get_all",
    "get_cookie",
    "get_one",
    "http_date",
    "invalidates_stored",
    "invalidation_targets",
    "is_valid_etag",
    "normalise_header_name",
    "normalise_query",
    "not_modified",
    "not_modified_headers",
    "only_if_cached",
    "parse_cache_control",
    "parse_http_date",
    "parse_vary",
    "patch_cache_control",
    "patch_vary",
    "query_param_names",
    "request_bypass",
    "request_cache_key",
    "response_cache_control",
    "stale_allowed",
    "storable",
    "strip_for_storage",
    "strong_etag",
    "surrogate_control",
    "upstream_age",
    "weaken_etag",
]

Headers = Sequence[tuple[str, str]]

X_CACHE_HEADER = "X-Cache"
X_CACHE_HIT = "HIT"
X_CACHE_MISS = "MISS"
X_CACHE_STALE = "STALE"
X_CACHE_BYPASS = "BYPASS"
# Debug header (off by default, R11): why a response was a MISS / BYPASS / not stored.
X_CACHE_REASON_HEADER = "X-Cache-Reason"

# RFC 9111 §1.2.1: a delta-seconds too large to represent is taken as 2^31.
MAX_DELTA = 2147483648
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"}
)
_NOT_MODIFIED_KEEP = frozenset(
    {
        "cache-control",
        "cdn-cache-control",
        "content-location",
        "date",
        "etag",
        "expires",
        "last-modified",
        "vary",
        # Django keeps cookies on a 304 built from a fresh response; a cookie refresh must
        # not be lost because the client happened to revalidate.
        "set-cookie",
        "age",
        "x-cache",
    }
)
# Directives that restrict reuse: present whatever argument they carry.
_RESTRICTIVE = frozenset(
    {"no-store", "must-revalidate", "proxy-revalidate", "only-if-cached", "no-transform"}
)
_DELTA_NAMES = frozenset({"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"})
_KNOWN = _RESTRICTIVE | _DELTA_NAMES | {"no-cache", "private", "public", "immutable"}
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_ETAG = re.compile(r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"')
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Stand-ins for quoted commas and quoted-pairs while splitting lists (see _members); none of
# them is whitespace to str.strip().
_MARKS = "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f\x10\x11\x12\x13\x14"


# --------------------------------------------------------------------------- header helpers


def normalise_header_name(name: str) -> str:
    """Return the comparison form of a field name: ASCII-lowercased, nothing else changed.

    ``_`` and ``-`` stay distinct (K5) and non-ASCII letters are not folded, so two names that
    differ on the wire never compare equal.
    """
    if name.isascii():
        return name.lower()
    # bytes.lower() folds ASCII only and UTF-8 continuation bytes are never ASCII.
    return name.encode("utf-8", "surrogatepass").lower().decode("utf-8", "surrogatepass")


def get_all(headers: Headers, name: str) -> list[str]:
    """Return every value of field ``name`` (case-insensitive), in order."""
    want = normalise_header_name(name)
    return [v for k, v in headers if normalise_header_name(k) == want]


def get_one(headers: Headers, name: str, default: str | None = None) -> str | None:
    """Return the first value of field ``name``, or ``default``."""
    want = normalise_header_name(name)
    for k, v in headers:
        if normalise_header_name(k) == want:
            return v
    return default


def get_cookie(headers: Headers, name: str) -> str | None:
    """Return the last non-empty value of cookie ``name`` in the ``Cookie`` fields, or None.

    Any non-empty occurrence counts, whatever its position: frameworks disagree on which of
    two duplicates wins (Django takes the last), so ``sessionid=; sessionid=abc`` is a session.
    """
    found = None
    for line in get_all(headers, "cookie"):
        if name not in line:  # cheap C-level scan before splitting a long header
            continue
        for pair in line.split(";"):
            key, eq, value = pair.partition("=")
            if eq and key.strip() == name:
                found = value.strip().strip('"') or found
    return found


# --------------------------------------------------------------------------- list parsing


def _members(value: str) -> tuple[list[str], bool]:
    """Split a comma list into distinct, stripped, non-empty members; report balanced quoting.

    Commas inside quoted strings do not split. Runs in C string operations only (no
    per-character Python loop, no regex backtracking): quoted-pairs and quoted commas are
    swapped for control characters absent from the value, the value is split, and they are
    swapped back. Identical repeats say nothing new, so they are dropped before any per-item
    work: a junk-filled header stays cheap.
    """
    if '"' not in value:
        return _distinct(value.split(",")), True
    marks = [c for c in _MARKS if c not in value][:3]
    if len(marks) < 3:
        # A field holding nearly every control character is junk: split naively so restrictive
        # directives are still seen, and report it unbalanced so it is treated as malformed.
        return _distinct(value.split(",")), False
    comma, backslash, quote = marks
    escaped = "\\" in value
    if escaped:
        value = value.replace("\\\\", backslash).replace('\\"', quote)
    parts = value.split('"')
    balanced = len(parts) % 2 == 1
    if escaped and any(backslash in p or quote in p for p in parts[0::2]):
        balanced = False  # a quoted-pair outside quotes: the field has no single reading
    restore = escaped
    if any("," in p for p in parts[1::2]):
        parts[1::2] = [p.replace(",", comma) for p in parts[1::2]]
        restore = True
    items = _distinct('"'.join(parts).split(","))
    if restore:
        items = [
            i.replace(comma, ",").replace(backslash, "\\\\").replace(quote, '\\"') for i in items
        ]
    return items, balanced


def _distinct(items: list[str]) -> list[str]:
    found = dict.fromkeys([i.strip() for i in items])
    found.pop("", None)
    return list(found)


def _unquote(arg: str) -> str:
    if len(arg) >= 2 and arg[0] == '"' and arg[-1] == '"':
        inner = arg[1:-1]
        return _QUOTED_PAIR.sub(r"\1", inner) if "\\" in inner else inner
    return arg


def _directives(value: str) -> tuple[list[tuple[str, str | None]], bool]:
    """Return ``(name, argument)`` pairs (names lowercased, arguments unquoted), balanced?"""
    items, balanced = _members(value)
    out: list[tuple[str, str | None]] = []
    for item in items:
        name, eq, arg = item.partition("=")
        out.append((name.rstrip().lower(), _unquote(arg.lstrip()) if eq else None))
    return out, balanced


def _delta_seconds(arg: str | None) -> int | None:
    """Parse delta-seconds (1*DIGIT, clamped to 2^31); None when invalid."""
    if not arg or not arg.isascii() or not arg.isdigit():
        return None  # empty, signed, fractional, non-ASCII digits, trailing junk
    digits = arg.lstrip("0")
    if len(digits) > 10:  # also keeps int() clear of its max-digits guard
        return MAX_DELTA
    return min(int(digits or "0"), MAX_DELTA)


def _field_names(arg: str | None) -> tuple[str, ...]:
    if not arg:
        return ()
    return tuple(n for n in (normalise_header_name(f.strip()) for f in arg.split(",")) if n)


# --------------------------------------------------------------------------- Cache-Control


@dataclass(frozen=True, slots=True)
class CacheControl:
    """Parsed Cache-Control (request or response); absent delta directives are None."""

    no_store: bool = False
    no_cache: bool = False
    no_cache_fields: tuple[str, ...] = ()
    private: bool = False
    private_fields: tuple[str, ...] = ()
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    no_transform: bool = False
    only_if_cached: bool = False
    immutable: bool = False
    max_age: int | None = None
    s_maxage: int | None = None
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None
    # True when a delta-seconds directive was invalid or duplicated with different values, or
    # quoting was unbalanced: the response must be treated as stale (RFC 9111 §4.2.1).
    malformed: bool = False
    extensions: tuple[tuple[str, str | None], ...] = ()  # unknown ones, lowercased


def parse_cache_control(values: Iterable[str]) -> CacheControl:
    """Parse and merge every Cache-Control field line into one CacheControl; never raise."""
    flags: dict[str, bool] = {}
    deltas: dict[str, int] = {}
    no_cache_fields: tuple[str, ...] = ()
    private_fields: tuple[str, ...] = ()
    extensions: list[tuple[str, str | None]] = []
    malformed = False
    for line in values:
        # Lowercase once, not per item: names and the arguments we read are case-insensitive.
        items, balanced = _members(normalise_header_name(line))
        malformed = malformed or not balanced
        for item in items:
            name, eq, raw = item.partition("=")
            name = name.rstrip()
            if name not in _KNOWN:
                if len(extensions) < 64:  # kept for callers, bounded against junk headers
                    extensions.append((name, _unquote(raw.lstrip()) if eq else None))
                continue
            arg = _unquote(raw.lstrip()) if eq else None
            if name in _DELTA_NAMES:
                seconds = _delta_seconds(arg)
                if seconds is None or deltas.get(name, seconds) != seconds:
                    malformed = True
                else:
                    deltas[name] = seconds
            elif name == "no-cache":
                flags[name] = True
                no_cache_fields += _field_names(arg)
            elif name == "private":
                flags[name] = True
                private_fields += _field_names(arg)
            elif name in ("public", "immutable"):
                # An argument makes these invalid; ignoring them is the safe reading.
                flags[name] = flags.get(name, False) or arg is None
            else:
                flags[name] = True  # restrictive: present whatever its argument
    return CacheControl(
        no_store=flags.get("no-store", False),
        no_cache=flags.get("no-cache", False),
        no_cache_fields=no_cache_fields,
        private=flags.get("private", False),
        private_fields=private_fields,
        public=flags.get("public", False),
        must_revalidate=flags.get("must-revalidate", False),
        proxy_revalidate=flags.get("proxy-revalidate", False),
        no_transform=flags.get("no-transform", False),
        only_if_cached=flags.get("only-if-cached", False),
        immutable=flags.get("immutable", False),
        max_age=deltas.get("max-age"),
        s_maxage=deltas.get("s-maxage"),
        stale_while_revalidate=deltas.get("stale-while-revalidate"),
        stale_if_error=deltas.get("stale-if-error"),
        malformed=malformed,
        extensions=tuple(extensions),
    )


def response_cache_control(headers: Headers) -> CacheControl:
    """Parse the ``Cache-Control`` fields of ``headers`` (never ``CDN-Cache-Control``, R7)."""
    return parse_cache_control(get_all(headers, "cache-control"))


def _format_directive(name: str, arg: str | None) -> str:
    if arg is None:
        return name
    # Field-name lists are always sent quoted (RFC 9111 §5.2.2.4, §5.2.2.7).
    if name in ("no-cache", "private") or not _TOKEN.fullmatch(arg):
        escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
        return f'{name}="{escaped}"'
    return f"{name}={arg}"


def patch_cache_control(existing: str | None, **directives: bool | int | str | None) -> str:
    """Return ``existing`` with ``directives`` set (True: bare, int/str: argument, None/False:
    removed), other directives kept in order; ``private`` drops ``public`` and vice versa.

    Keyword names use ``_`` for ``-`` (``max_age=60``). A new ``max-age`` replaces the old one
    (unlike Django, which keeps the smaller): an explicit setting should mean what it says.
    """
    current: dict[str, str | None] = {}
    if existing:
        for name, arg in _directives(existing)[0]:
            current.setdefault(name, arg)
    for key, value in directives.items():
        name = key.replace("_", "-").lower()
        if value is None or value is False:
            current.pop(name, None)
            continue
        if name in ("private", "public"):
            current.pop("public" if name == "private" else "private", None)
        if value is True:
            current[name] = None
        elif isinstance(value, int):
            if value < 0:
                raise ValueError(f"Cache-Control {name} must be >= 0, got {value}")
            current[name] = str(min(value, MAX_DELTA))
        else:
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                raise ValueError(f"Cache-Control {name} argument contains control characters")
            current[name] = value
    return ", ".join(_format_directive(n, a) for n, a in current.items())


def format_cache_control(**directives: bool | int | str | None) -> str:
    """Return a Cache-Control value from keyword directives (see ``patch_cache_control``)."""
    return patch_cache_control(None, **directives)


# --------------------------------------------------------------------------- Vary and keys


def parse_vary(values: Iterable[str]) -> tuple[str, ...] | Literal["*"]:
    """Return the lowercased, deduplicated field names of all Vary lines, or ``"*"``."""
    names: dict[str, None] = {}
    for line in values:
        members = _distinct(normalise_header_name(line).split(","))
        if "*" in members:
            return "*"  # anywhere, on any line: never matches (RFC 9111 §4.1)
        names.update(dict.fromkeys(members))
    return tuple(names)


def patch_vary(existing: Iterable[str], *names: str) -> str:
    """Return a Vary value holding the ``existing`` names plus ``names`` (S10: ``Cookie``)."""
    kept: dict[str, str] = {}
    for line in (*existing, ",".join(names)):
        for raw in line.split(","):
            name = raw.strip()
            if name == "*":
                return "*"
            if name:
                kept.setdefault(normalise_header_name(name), name)
    return ", ".join(kept.values())


def normalise_query(query: str, allow: Collection[str] | None = None) -> str:
    """Return ``query`` with parameters stably sorted by raw name; never raise.

    Only order changes: names and values keep their exact encoding (``+`` vs ``%20`` stay
    distinct: two spellings may cost two entries, never a wrong one). Empty segments (``&&``)
    are dropped, as Django's QueryDict and ``urllib.parse.parse_qsl`` drop them; ``;`` is not a
    separator (so no parameter cloaking).

    ``allow``: keep only the parameters whose name, decoded as the app decodes it
    (``query_param_names``), is in it; every other parameter is left out. ``None``: keep all.
    """
    params = [p for p in query.split("&") if p]
    if allow is not None:
        params = [
            p for p in params if any(n in allow for n in query_param_names(p.partition("=")[0]))
        ]
    params.sort(key=lambda p: p.partition("=")[0])
    return "&".join(params)


def query_param_names(raw: str) -> tuple[str, ...]:
    """The names a raw query parameter name (as sent: percent-encoded, ``+`` for space) may
    have in the app, so ``p%61ge`` is ``page`` here exactly as in the view. ``raw`` is the
    query as servers hand it over (its bytes read as latin-1). Django decodes the query's
    bytes as UTF-8 (latin-1 when they are not valid UTF-8), Starlette as latin-1, then both
    percent-decode as UTF-8 with invalid bytes replaced: both readings are returned when raw
    non-ASCII bytes make them differ."""
    name = raw.replace("+", " ")
    if "%" not in name and name.isascii():
        return (name,)
    as_latin1 = unquote(name, "utf-8", "replace")
    try:
        data = name.encode("latin-1")
    except UnicodeEncodeError:
        return (as_latin1,)
    as_utf8 = unquote_to_bytes(data).decode("utf-8", "replace")
    return (as_utf8,) if as_utf8 == as_latin1 else (as_utf8, as_latin1)


def request_cache_key(
    method: str,
    scheme: str,
    host: str,
    path: str,
    query: str,
    vary: tuple[str, ...],
    request_headers: Headers,
    *,
    extra: str = "",
    query_params: Collection[str] | None = None,
) -> str:
    """Return a collision-free key for a request and the Vary names of its stored response.

    Each part is length-prefixed; an absent Vary-named header is ``-`` while an empty one is
    ``0:`` (K4). The path is used byte for byte (K6); header names are compared
    case-insensitively, with ``_`` and ``-`` kept apart (K5). ``query_params``: the only
    query parameters (by decoded name) that are part of the key; None: all of them.
    """
    parts: list[str | None] = [
        "GET" if method == "HEAD" else method,  # HEAD is answered from the stored GET (K7)
        scheme.lower(),
        normalise_header_name(host),  # host names are case-insensitive (RFC 3986 §3.2.2)
        path,
        normalise_query(query, query_params),
        extra,
    ]
    wanted = sorted({normalise_header_name(n.strip()) for n in vary})
    found: dict[str, list[str]] = {}
    if wanted:  # one pass over the request, however long the Vary list is
        for k, v in request_headers:
            found.setdefault(normalise_header_name(k), []).append(v)
    for name in wanted:
        values = found.get(name)
        parts.append(name)
        # Lines combine as one list (RFC 9110 §5.3); OWS around each line is not content.
        parts.append(", ".join(v.strip(" \t") for v in values) if values else None)
    return "h1|" + "|".join("-" if p is None else f"{len(p)}:{p}" for p in parts)


# --------------------------------------------------------------------------- storing


@dataclass(frozen=True, slots=True)
class StoreDecision:
    """Whether a response may be stored, why, and for how long (origin-driven mode)."""

    ok: bool
    reason: str  # for people (logs)
    ttl: float | None = None
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    cache_control: CacheControl | None = None
    # For machines: one token (``sets-cookie``, ``private``, ``vary-star`` ...), what the
    # X-Cache-Reason debug header says (R11); ``stored`` when ``ok``.
    code: str = "stored"
    # The response's own Surrogate-Control (untargeted directives) when it decided (S19).
    surrogate: CacheControl | None = None


def _refuse(code: str, reason: str, cc: CacheControl | None = None) -> StoreDecision:
    return StoreDecision(False, reason, cache_control=cc, code=code)


def stale_allowed(cc: CacheControl, *, error: bool, shared: bool = True) -> float:
    """Return how many seconds past freshness the response may be served stale (R3)."""
    if cc.no_store or cc.no_cache or cc.must_revalidate:
        return 0.0
    # s-maxage carries proxy-revalidate's semantics for shared caches (RFC 9111 §5.2.2.10).
    if shared and (cc.proxy_revalidate or cc.s_maxage is not None):
        return 0.0
    window = cc.stale_if_error if error else cc.stale_while_revalidate
    return float(window or 0)


def freshness_lifetime(
    response_headers: Headers,
    *,
    shared: bool,
    cc: CacheControl | None = None,
    now: float | None = None,
) -> float | None:
    """Return the explicit freshness lifetime in seconds, 0.0 if born stale, None if none.

    Order (RFC 9111 §4.2.1): ``s-maxage`` (shared only) > ``max-age`` > ``Expires - Date``.
    An invalid or repeated-and-differing ``Expires`` (``0`` included) means already expired.
    """
    if cc is None:
        cc = response_cache_control(response_headers)
    if cc.malformed:
        return 0.0
    if shared and cc.s_maxage is not None:
        return float(cc.s_maxage)
    if cc.max_age is not None:
        return float(cc.max_age)  # Expires is ignored when max-age is present
    expires = get_all(response_headers, "expires")
    if not expires:
        return None
    expires_at = parse_http_date(expires[0]) if len(set(expires)) == 1 else None
    if expires_at is None:
        return 0.0
    date = _first_date(response_headers, "date")
    base = date if date is not None else (time.time() if now is None else now)
    return max(0.0, expires_at - base)


def upstream_age(response_headers: Headers) -> int | None:
    """Return the ``Age`` a response arrived with: 0 when it has none, None when it cannot be
    read as one non-negative integer (S18).

    RFC 9111 §5.1 asks a cache to use the first member of a list-based ``Age`` and to ignore
    an invalid one; cachekit, a shared cache, reads such a field as no reliable age at all
    (the caller treats the response as stale): ``-1``, ``1.5``, ``abc``, ``5;p=1``, an empty
    value, or members that differ (``5, 7`` or two lines). Identical repeats read as one
    value, so two caches can never disagree about the age.
    """
    lines = get_all(response_headers, "age")
    if not lines:
        return 0
    members = {m.strip(" \t") for line in lines for m in line.split(",")}
    if len(members) != 1:
        return None  # differing members, or an empty one next to a value
    return _delta_seconds(members.pop())


def current_age(response_headers: Headers, now: float | None = None) -> float:
    """Return the age the response already has when it arrives (RFC 9111 §4.2.3's corrected
    initial age, with no transit delay: the app renders in this process): its ``Age`` or
    ``now - Date``, the larger. An unreadable ``Age`` counts as none here (see
    ``upstream_age``: ``storable`` refuses such a response in shared-cache mode, S18)."""
    age = upstream_age(response_headers) or 0
    date = _first_date(response_headers, "date")
    if date is None:
        return float(age)
    apparent = (time.time() if now is None else now) - date
    return max(float(age), apparent, 0.0)


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"?')


def surrogate_control(response_headers: Headers) -> CacheControl | None:
    """Return the ``Surrogate-Control`` directives meant for every surrogate, parsed like
    ``Cache-Control``; None when there is no such field or it holds none (S19).

    W3C Edge Architecture §2.2-2.3: a directive followed by ``;token`` targets one device;
    cachekit has no device token, so targeted directives are ignored. ``max-age=60+30``: the
    freshness extension (``+30``) is not used (nothing is served past ``max-age`` for it).
    """
    lines = get_all(response_headers, "surrogate-control")
    if not lines:
        return None
    kept: list[str] = []
    for line in lines:
        items, balanced = _members(line)
        if not balanced:
            return CacheControl(malformed=True)  # as for Cache-Control: no single reading
        for item in items:
            if ";" in _QUOTED.sub("", item):
                continue  # targeted at a named device
            name, eq, arg = item.partition("=")
            if eq and name.strip().lower() == "max-age" and "+" in arg:
                item = f"max-age={arg.partition('+')[0].strip()}"
            kept.append(item)
    return parse_cache_control([", ".join(kept)]) if kept else None


def storable(
    status: int,
    response_headers: Headers,
    *,
    method: str,
    shared: bool,
    origin_driven: bool,
    cacheable_statuses: frozenset[int] = frozenset({200}),
    request_has_authorization: bool = False,
    now: float | None = None,
    surrogate: bool = False,
) -> StoreDecision:
    """Decide whether a response may be stored (S1-S8, S12-S16, S18, S19, C9).

    ``shared`` is False only for per-user entries; ``origin_driven`` is shared-cache mode,
    where the response's own freshness decides the TTL and no explicit freshness means no store.
    ``surrogate``: honour ``Surrogate-Control`` (S19): its ``no-store`` refuses the response,
    its ``max-age`` is the lifetime and overrides ``Cache-Control``'s ``no-store``,
    ``no-cache``, ``must-revalidate`` and freshness; ``private``, ``Set-Cookie``, ``Vary: *``
    and an authorized request still refuse it (S4, S6-S8: personal data is never shared).
    """
    if method != "GET":
        # HEAD has no body to store; a stored GET answers it instead (K7).
        return _refuse("method", f"method {method!r} is not stored")
    if status < 200 or status >= 400 or status in (206, 304):
        return _refuse("status", f"status {status} is never stored")
    if status not in cacheable_statuses:
        return _refuse("status", f"status {status} is not in the cacheable set")
    if get_all(response_headers, "set-cookie"):
        return _refuse("sets-cookie", "response sets a cookie")
    cc = response_cache_control(response_headers)
    sc = surrogate_control(response_headers) if surrogate else None
    if sc is not None and sc.malformed:
        return _refuse("malformed-surrogate-control", "malformed Surrogate-Control", cc)
    if sc is not None and sc.no_store:
        return _refuse("no-store", "Surrogate-Control: no-store", cc)
    if sc is not None and sc.max_age is None:
        sc = None  # nothing about freshness for this cache: Cache-Control decides
    if sc is None:
        if cc.malformed:
            return _refuse("malformed-cache-control", "malformed Cache-Control", cc)
        if cc.no_store:
            return _refuse("no-store", "Cache-Control: no-store", cc)
        if cc.no_cache:
            # Most restrictive wins: no-cache beats any max-age (RFC 9111 §4.2.1, S15).
            return _refuse("no-cache", "Cache-Control: no-cache", cc)
    if shared and cc.private:
        return _refuse("private", "Cache-Control: private", cc)
    if parse_vary(get_all(response_headers, "vary")) == "*":
        return _refuse("vary-star", "Vary: *", cc)
    if (
        shared
        and request_has_authorization
        and not (cc.public or cc.s_maxage is not None or cc.must_revalidate)
    ):
        return _refuse("authorization", "authorized request (RFC 9111 §3.5)", cc)
    ttl = None
    if origin_driven:
        age = upstream_age(response_headers)
        if age is None:
            return _refuse("invalid-age", "unreadable Age: taken as stale (S18)", cc)
        if sc is not None:
            lifetime: float | None = float(sc.max_age or 0)
        else:
            lifetime = freshness_lifetime(response_headers, shared=shared, cc=cc, now=now)
        if lifetime is None:
            return _refuse("no-freshness", "no explicit freshness", cc)
        ttl = lifetime - current_age(response_headers, now)
        if ttl <= 0:
            return _refuse("already-stale", "already stale", cc)
    windows = sc if sc is not None else cc
    return StoreDecision(
        True,
        "storable",
        ttl,
        stale_allowed(windows, error=False, shared=shared),
        stale_allowed(windows, error=True, shared=shared),
        cc,
        surrogate=sc,
    )


def strip_for_storage(
    response_headers: Headers, *, drop: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Return the headers to store: no hop-by-hop or Connection-named fields, ``Set-Cookie``,
    ``Age`` or ``drop`` names (e.g. the configured X-Cache name) (S17)."""
    banned = set(_HOP_BY_HOP) | {"set-cookie", "age"}
    banned.update(normalise_header_name(n) for n in drop)
    for line in get_all(response_headers, "connection"):
        banned.update(normalise_header_name(t.strip()) for t in line.split(","))
    return [
        (k, v)
        for k, v in response_headers
        if (n := normalise_header_name(k)) not in banned and not n.startswith("proxy-")
    ]


def invalidates_stored(method: str, status: int) -> bool:
    """Return whether this response invalidates stored entries for its URL (R4)."""
    return method not in _SAFE_METHODS and 200 <= status < 400


_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin(scheme: str, netloc: str) -> tuple[str, str]:
    """(scheme, host[:port]) compared case-insensitively, the scheme's default port dropped."""
    scheme, netloc = scheme.lower(), normalise_header_name(netloc)
    host, colon, port = netloc.rpartition(":")
    if colon and "]" not in port and port == _DEFAULT_PORTS.get(scheme):
        netloc = host
    return scheme, netloc


def invalidation_targets(
    scheme: str, host: str, path: str, query: str, response_headers: Headers
) -> list[tuple[str, str]]:
    """Return the ``(path, query)`` of each URL in the response's ``Location`` and
    ``Content-Location`` that has the request's origin (R10).

    References are resolved against the request's URL (``/a``, ``b``, ``../c``, ``?q=1``,
    ``//host/d``); a target on another scheme, host or port, with userinfo, or unreadable is
    left out (RFC 9111 §4.4: a cache MUST NOT invalidate another origin's URLs, or anyone
    could flush them). Each path is given as sent (percent-encoded) and, when it differs,
    percent-decoded too: adapters key pages by the raw path (ASGI) or the decoded one (Django).
    """
    found: dict[tuple[str, str], None] = {}
    base = f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
    origin = _origin(scheme, host)
    for name in ("location", "content-location"):
        for value in get_all(response_headers, name):
            value = value.strip(" \t")
            if not value or len(value) > 8192 or not value.isprintable():
                continue
            try:
                target = urlsplit(urljoin(base, value))
            except ValueError:  # e.g. an invalid IPv6 literal
                continue
            if "@" in target.netloc or _origin(target.scheme, target.netloc) != origin:
                continue
            target_path = target.path or "/"
            found[(target_path, target.query)] = None
            decoded = unquote(target_path, "utf-8", "replace")
            found[(decoded, target.query)] = None
    return list(found)


# --------------------------------------------------------------------------- requests


def _request_no_cache(request_headers: Headers) -> bool:
    lines = get_all(request_headers, "cache-control")
    if lines:
        cc = parse_cache_control(lines)
        return cc.no_cache or cc.max_age == 0
    return any(
        t.strip().lower() == "no-cache"
        for v in get_all(request_headers, "pragma")
        for t in v.split(",")
    )


def request_bypass(
    method: str,
    request_headers: Headers,
    *,
    session_cookie: str | None,
    per_user: bool,
    honour_request_no_cache: bool,
) -> str | None:
    """Return why this request must bypass the shared cache, or None to use it (S1, S8, S9, R5)."""
    if method not in ("GET", "HEAD"):
        return f"method {method!r}"
    if not per_user:
        if any(v.strip() for v in get_all(request_headers, "authorization")):
            return "authorization"  # an empty Authorization is not a credential
        if session_cookie and get_cookie(request_headers, session_cookie) is not None:
            return "session cookie"
    if honour_request_no_cache and _request_no_cache(request_headers):
        return "request no-cache"
    return None


def bypass_code(reason: str) -> str:
    """Return the one-token form of a bypass reason (``request_bypass``'s, or the HTTP
    cache's own): what the X-Cache-Reason debug header says (R11)."""
    if reason.startswith("method "):
        return "method"
    return _BYPASS_CODES.get(reason, reason.replace(" ", "-"))


_BYPASS_CODES = {
    "session cookie": "session-cookie",
    "request no-cache": "request-no-cache",
    "per-user view without a user": "no-user",
    "precondition for the app": "precondition",
}


def only_if_cached(request_headers: Headers) -> bool:
    """Return whether the request says ``only-if-cached`` (answer 504 on a miss, R5)."""
    return parse_cache_control(get_all(request_headers, "cache-control")).only_if_cached


# --------------------------------------------------------------------------- validators


def strong_etag(body: bytes) -> str:
    """Return a strong ETag for the exact body bytes (C10)."""
    return '"' + blake2b(body, digest_size=16).hexdigest() + '"'


def weaken_etag(etag: str) -> str:
    """Return ``etag`` as a weak validator (for a body re-encoded after hashing)."""
    return etag if etag.startswith("W/") else "W/" + etag


def is_valid_etag(value: str) -> bool:
    """Return whether ``value`` is an entity-tag: optional ``W/``, then quoted etagc (C11)."""
    return len(value) <= 8192 and _ETAG.fullmatch(value.strip(" \t")) is not None


def etag_matches_if_none_match(if_none_match_values: Iterable[str], etag: str) -> bool:
    """Return whether If-None-Match matches ``etag`` by weak comparison, ``*`` included."""
    field = ", ".join(if_none_match_values)
    if '"' not in field:
        # "*" matches any current representation (RFC 9110 §13.1.2).
        return "*" in (m.strip() for m in field.split(","))
    target = etag.strip(" \t")
    if not _ETAG.fullmatch(target):
        return False
    parts = field.split('"')  # etagc excludes '"', so odd parts are the opaque tags
    if len(parts) % 2 == 0 or target.rsplit('"', 2)[1] not in parts[1::2]:
        return False
    # Only separators between tags may remain: commas, whitespace and the W/ prefix.
    return all(sep.strip(" \t,") in ("", "W/") for sep in set(parts[0::2]))


def not_modified(
    method: str, request_headers: Headers, status: int, response_headers: Headers
) -> bool:
    """Return whether to answer 304 instead of this response (C1-C6)."""
    if method not in ("GET", "HEAD") or not 200 <= status < 300:
        return False
    inm = get_all(request_headers, "if-none-match")
    if inm:  # present: If-Modified-Since is ignored (RFC 9110 §13.1.3)
        return etag_matches_if_none_match(inm, get_one(response_headers, "etag") or "")
    ims = get_all(request_headers, "if-modified-since")
    if len(ims) != 1:  # absent, or several members
        return False
    since = parse_http_date(ims[0])
    modified = _first_date(response_headers, "last-modified")
    return since is not None and modified is not None and modified <= since


def not_modified_headers(
    response_headers: Headers, *, keep: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Return the fields a 304 carries: validators and caching metadata, no body fields (C7)."""
    wanted = _NOT_MODIFIED_KEEP | {normalise_header_name(n) for n in keep}
    return [(k, v) for k, v in response_headers if normalise_header_name(k) in wanted]


# --------------------------------------------------------------------------- dates and Age


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MON = "|".join(_MONTHS)
_DAY3 = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"
_DAYN = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_HMS = "([0-9]{2}):([0-9]{2}):([0-9]{2})"
# Fixed-shape patterns: no nested quantifiers, so no backtracking blow-up.
_IMF = re.compile(rf"(?:{_DAY3}), ([0-9]{{2}}) ({_MON}) ([0-9]{{4}}) {_HMS} GMT")
_RFC850 = re.compile(rf"(?:{_DAYN}), ([0-9]{{2}})-({_MON})-([0-9]{{2}}) {_HMS} GMT")
_ASCTIME = re.compile(rf"(?:{_DAY3}) ({_MON}) ([0-9 ][0-9]) {_HMS} ([0-9]{{4}})")


def parse_http_date(value: str) -> float | None:
    """Return the POSIX time of an HTTP-date (IMF-fixdate, RFC 850, asctime), else None."""
    value = value.strip(" \t")
    if len(value) > 40:
        return None
    if m := _IMF.fullmatch(value):
        day, mon, year, hh, mm, ss = m.groups()
        y = int(year)
    elif m := _RFC850.fullmatch(value):
        day, mon, yy, hh, mm, ss = m.groups()
        # RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in the past century.
        this_year = time.gmtime().tm_year
        y = this_year - this_year % 100 + int(yy)
        if y > this_year + 50:
            y -= 100
    elif m := _ASCTIME.fullmatch(value):
        mon, day, hh, mm, ss, year = m.groups()
        y = int(year)
    else:
        return None
    month = _MONTHS.index(mon) + 1
    d, h, mi, s = int(day), int(hh), int(mm), int(ss)
    if y < 1 or not 1 <= d <= calendar.monthrange(y, month)[1] or h > 23 or mi > 59 or s > 60:
        return None
    return float(calendar.timegm((y, month, d, h, mi, s, 0, 0, 0)))


def _first_date(headers: Headers, name: str) -> float | None:
    value = get_one(headers, name)
    return None if value is None else parse_http_date(value)


def http_date(ts: float) -> str:
    """Return ``ts`` as an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    return formatdate(ts, usegmt=True)


def age_header(stored_at: float, now: float) -> str:
    """Return the Age value for an entry stored at ``stored_at``: whole seconds, >= 0 (R1)."""
    age = now - stored_at
    if not math.isfinite(age) or age <= 0:
        return "0"
    return str(min(int(age), MAX_DELTA))
