"""Django's request/response <-> cachekit_core's HTTP cache: the pure steps of
``CacheMiddleware`` and ``cache_view`` (their I/O is written once in ``_async/pages.py``;
``_sync/pages.py`` is generated), the HTTP settings and the process's ``HttpCache``.

Every decision (bypass, storable, key, validators, 304, Age, X-Cache) is made by
``cachekit_core.httpcache``; this module only translates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.http.request import HttpHeaders
from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH, get_token
from django.utils import timezone, translation
from django.utils.crypto import salted_hmac

from cachekit_core import Cache, ConfigurationError, http
from cachekit_core.httpcache import HttpCache, HttpSettings, Lookup, Request, Response

from . import conf

__all__ = [
    "State",
    "auser_id",
    "core_request",
    "core_response",
    "csrf_page",
    "fill_csrf",
    "get_http_cache",
    "http_settings",
    "key_variant",
    "mark",
    "no_store",
    "passes_through",
    "served",
    "to_django",
    "user_id",
    "vary_on_session",
]


def http_settings() -> HttpSettings:
    """``CACHEKIT["HTTP"]`` as core settings, validated by the core (one definition for every
    adapter); ``ImproperlyConfigured`` names the bad key."""
    root = getattr(settings, "CACHEKIT", None) or {}
    config = (root.get("HTTP") if isinstance(root, Mapping) else None) or {}
    try:
        return HttpSettings.from_mapping(config, session_cookie=settings.SESSION_COOKIE_NAME)
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f'CACHEKIT["HTTP"]: {exc}') from exc


_http: tuple[Cache, HttpCache] | None = None


def get_http_cache() -> HttpCache:
    """The process-wide ``HttpCache`` on ``conf.engine()`` (rebuilt when settings change)."""
    global _http
    cache, current = conf.engine(), _http
    if current is None or current[0] is not cache:
        current = _http = (cache, HttpCache(cache, http_settings()))
    return current[1]


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    global _http
    if setting in ("CACHEKIT", "SESSION_COOKIE_NAME", "SECRET_KEY", "CACHES"):
        _http = None


setting_changed.connect(_on_setting_changed, dispatch_uid="cachekit_django._pages")


@dataclass(slots=True)
class State:
    """What ``CacheMiddleware`` leaves on the request for ``cache_view`` (and what
    ``cache_view`` uses on its own when the request did not pass through the middleware).

    ``lookup`` stays None until a cached view looks its page up (or, in shared-cache mode,
    the middleware does before routing): a request that reached no cached view passes
    through untouched."""

    http: HttpCache
    lookup: Lookup | None = None
    csrf: bool = True  # the view's cache_view(csrf=): store pages with a CSRF token
    view_vary: list[str] = field(default_factory=list)  # the Vary the view itself sent
    # Whether the view used the CSRF token (seen before CsrfViewMiddleware resets its flag).
    token: bool = False


def core_request(request: HttpRequest) -> Request | None:
    try:
        host = request.get_host()  # K2: the validated host the view sees, X-Forwarded-Host rules
    except DisallowedHost:
        return None  # the view's own get_host() answers 400; nothing to cache
    return Request(
        method=request.method or "GET",
        scheme=request.scheme or "http",
        host=host,
        path=request.path,  # what Django routes by (K6: used byte for byte by the core)
        query=request.META.get("QUERY_STRING", ""),
        # From META, where Django already dropped underscored header names (K5).
        headers=_request_headers(request),
    )


#: META key -> header name as ``HttpHeaders.parse_header_name`` spells it (None: not a header).
#: Bounded: header names come from clients, so an unbounded memo would be a memory leak.
_HEADER_NAMES: dict[str, str | None] = {}
_HEADER_NAMES_MAX = 1024


def _request_headers(request: HttpRequest) -> list[tuple[str, str]]:
    """``list(request.headers.items())`` without building ``HttpHeaders`` (same names, order
    and values): when the view never runs, nothing else needs that object."""
    cached = request.__dict__.get("headers")
    if cached is not None:  # already built (cached_property): reuse it
        return list(cached.items())
    names = _HEADER_NAMES
    headers: dict[str, str] = {}
    for key, value in request.META.items():
        try:
            name = names[key]
        except KeyError:
            name = HttpHeaders.parse_header_name(key)
            if len(names) < _HEADER_NAMES_MAX:
                names[key] = name
        if name is not None:
            headers[name] = value
    return list(headers.items())


def key_variant(request: HttpRequest) -> str:
    """What the page depends on beyond the URL, as Django's own ``cache_page`` keys it
    (``django.utils.cache._i18n_cache_key_suffix``): with ``USE_I18N`` the active language,
    with ``USE_TZ`` the current time zone. Read after routing, when the middleware that
    activate them (``LocaleMiddleware``, a project's time zone middleware) have run."""
    parts = []
    if settings.USE_I18N:
        parts.append(
            "lang=" + str(getattr(request, "LANGUAGE_CODE", None) or translation.get_language())
        )
    if settings.USE_TZ:
        parts.append("tz=" + timezone.get_current_timezone_name())
    return "|".join(parts)


def core_response(response: HttpResponseBase, *, skip_cookie: str | None = None) -> Response:
    """A buffered (not streaming) response as the core sees it (``skip_cookie``: a cookie
    left out, the CSRF cookie of a page whose token is stored as a placeholder)."""
    headers = list(response.headers.items())
    # Django keeps cookies apart from headers: the core must see them to refuse storage (S7).
    headers += [
        ("Set-Cookie", m.OutputString())
        for name, m in response.cookies.items()
        if name != skip_cookie
    ]
    return Response(response.status_code, headers, response.content)  # type: ignore[attr-defined]


def no_store(response: HttpResponseBase, view: Any) -> bool:
    """Whether the response says ``no-store`` (its own ``Cache-Control``, else the view's
    ``cache_control``): such a response gets no validator and never a 304 from cachekit."""
    value: str | None = response.headers.get("Cache-Control")
    if value is None:
        value = getattr(view, "cache_control", None)
    if not value:
        return False
    return http.response_cache_control([("Cache-Control", value)]).no_store


# --------------------------------------------------------------------------- CSRF
# A page rendered with {% csrf_token %} holds the requesting client's masked token, and
# CsrfViewMiddleware sets its CSRF cookie (and Vary: Cookie) on it. Such a page is stored
# with a placeholder where the token was, without that cookie and Vary; every client it is
# served to gets its own token in its place (get_token: CsrfViewMiddleware then sets the
# client's cookie as it would on a rendered page). The placeholder is derived from
# SECRET_KEY, so page content can neither predict it nor smuggle it in to collect a token.

_TOKEN_RUN = re.compile(
    rb"(?<![A-Za-z0-9])[A-Za-z0-9]{%d}(?![A-Za-z0-9])" % (2 * CSRF_SECRET_LENGTH)
)
_CSRF_ETAG = 'W/"ck-csrf.'


def _placeholder() -> bytes:
    digest = salted_hmac("cachekit_django.csrf-placeholder", "token", algorithm="sha256")
    return digest.hexdigest().encode()  # 64 characters, as a masked token


def _unmask(token: str) -> str:
    """The secret a masked token carries (``django.middleware.csrf._unmask_cipher_token``)."""
    chars = CSRF_ALLOWED_CHARS
    mask, cipher = token[:CSRF_SECRET_LENGTH], token[CSRF_SECRET_LENGTH:]
    return "".join(
        chars[chars.index(c) - chars.index(m)] for c, m in zip(cipher, mask, strict=True)
    )


def _client_digest(secret: str) -> str:
    return salted_hmac("cachekit_django.csrf-etag", secret).hexdigest()[:16]


def csrf_token_used(request: HttpRequest) -> bool:
    """Whether the view asked for the CSRF token (``get_token``: ``{% csrf_token %}``)."""
    return bool(request.META.get("CSRF_COOKIE_NEEDS_UPDATE"))


def csrf_page(request: HttpRequest, sent: Response) -> bool:
    """Make ``sent`` (a rendered page that used this client's CSRF token) storable for
    everyone: its masked tokens become the placeholder, its ETag a weak one of this client's
    (a 304 never confirms a page holding another secret's token). False when that cannot be
    done safely (CSRF_USE_SESSIONS, the raw secret in the page): then it is not stored."""
    secret = request.META.get("CSRF_COOKIE")
    if settings.CSRF_USE_SESSIONS or not isinstance(secret, str):
        return False
    body, placeholder = sent.body, _placeholder()
    if len(secret) != CSRF_SECRET_LENGTH or secret.encode() in body or placeholder in body:
        return False

    def swap(match: re.Match[bytes]) -> bytes:
        try:
            mine = _unmask(match.group().decode()) == secret
        except ValueError:
            mine = False
        return placeholder if mine else match.group()

    sent.body = _TOKEN_RUN.sub(swap, body)
    if sent.body != body and not http.get_all(sent.headers, "etag"):
        inner = http.strong_etag(sent.body).strip('"')
        sent.headers.append(("ETag", f'{_CSRF_ETAG}{inner}.{_client_digest(secret)}"'))
    return True


def fill_csrf(request: HttpRequest, response: HttpResponseBase) -> None:
    """Put this client's own CSRF token where a stored page has the placeholder."""
    if response.streaming or request.method == "HEAD":
        return
    content: bytes = response.content  # type: ignore[attr-defined]
    placeholder = _placeholder()
    if placeholder not in content:
        return
    token = get_token(request)  # CsrfViewMiddleware sets this client's cookie on the way out
    response.content = content.replace(placeholder, token.encode())  # type: ignore[attr-defined]
    etag = response.headers.get("ETag", "")
    if etag.startswith(_CSRF_ETAG):
        secret = str(request.META.get("CSRF_COOKIE", ""))
        response.headers["ETag"] = f'{etag.rsplit(".", 1)[0]}.{_client_digest(secret)}"'


def strip_csrf_vary(request: HttpRequest, state: State, sent: Response) -> bool:
    """Drop ``Cookie`` from the stored page's Vary when only the CSRF cookie put it there
    (the session unread, the view's own Vary without it). True if it was dropped."""
    session = getattr(request, "session", None)
    if getattr(session, "accessed", False) or "cookie" in http.parse_vary(state.view_vary):
        return False
    vary = http.parse_vary(http.get_all(sent.headers, "vary"))
    if vary == "*" or "cookie" not in vary:
        return False
    kept = [v for v in vary if v != "cookie"]
    names = [
        name.strip()
        for value in http.get_all(sent.headers, "vary")
        for name in value.split(",")
        if name.strip() and name.strip().lower() in kept
    ]
    sent.headers[:] = [(k, v) for k, v in sent.headers if k.lower() != "vary"]
    if names:
        sent.headers.append(("Vary", ", ".join(dict.fromkeys(names))))
    return True


def to_django(
    served: Response, original: HttpResponseBase | None = None, sent: Response | None = None
) -> HttpResponseBase:
    """``served`` as a Django response, in place on ``original`` (the same object, class
    and attributes: a redirect keeps ``.url``) when only headers changed or, for HEAD, the
    body was dropped."""
    if original is None:
        fresh = _new_django(served)
        if fresh is not None:
            return fresh
        out: HttpResponseBase = HttpResponse(served.body, status=served.status)
    elif served is sent:
        out = original
    elif sent is not None and served.status == sent.status and served.status != 304:
        out = original  # HEAD: the same response, its body dropped
        if served.body != getattr(original, "content", served.body):
            original.content = served.body  # type: ignore[attr-defined]
    else:
        out = HttpResponse(served.body, status=served.status)
        out.cookies = original.cookies  # a 304 keeps Set-Cookie, as Django's own does
    for name in list(out.headers):
        del out.headers[name]
    for name, value in served.headers:
        if name.lower() == "set-cookie":
            continue  # lives in out.cookies
        previous = out.headers.get(name)
        out.headers[name] = value if previous is None else f"{previous}, {value}"
    return out


def _new_django(served: Response) -> HttpResponse | None:
    """The hit path's fresh ``HttpResponse``, its headers passed to the constructor in one go:
    Set-Cookie left out (a fresh response has no cookies) and no Content-Type unless
    ``served`` has one. ``None`` when a name repeats: ``to_django`` then joins the values
    one by one, as Django encodes each."""
    headers: dict[str, str] = {}
    lowers: set[str] = set()
    for name, value in served.headers:
        lower = name.lower()
        if lower == "set-cookie":
            continue
        if lower in lowers:
            return None  # a repeated name (in any spelling)
        lowers.add(lower)
        headers[name] = value
    out = HttpResponse(served.body, status=served.status, headers=headers)
    if "content-type" not in lowers:
        del out.headers["Content-Type"]  # Django's default; the served page has none
    return out


def served(lookup: Lookup) -> HttpResponseBase | None:
    """The page a lookup answered with, marked so the middleware passes it on untouched."""
    if lookup.response is None:
        return None
    response = to_django(lookup.response)
    response._cachekit_served = True  # type: ignore[attr-defined]
    return response


def _id_of(user: Any) -> str | None:
    return str(user.pk) if user is not None and getattr(user, "is_authenticated", False) else None


# Django reads the user with ``request.user`` in sync code and ``await request.auser()`` in
# async code: one name per side, so that one source (``_async/pages.py``) serves both.
def user_id(request: HttpRequest) -> str | None:
    """The logged-in user's id (a per-user view's key), or None."""
    return _id_of(getattr(request, "user", None))


async def auser_id(request: HttpRequest) -> str | None:
    """``user_id`` in async code (``request.auser()``, where AuthenticationMiddleware set it)."""
    auser = getattr(request, "auser", None)
    return _id_of(await auser() if auser is not None else getattr(request, "user", None))


def vary_on_session(request: HttpRequest, response: HttpResponseBase) -> None:
    # S10: a page that read the session differs per session, whatever the middleware order.
    session = getattr(request, "session", None)
    if session is not None and getattr(session, "accessed", False):
        response.headers["Vary"] = http.patch_vary(
            [response.headers["Vary"]] if "Vary" in response.headers else [], "Cookie"
        )


def mark(state: State, response: HttpResponseBase) -> HttpResponseBase:
    """X-Cache on a response that passed through (a header only: the body stays unread)."""
    name = state.http.settings.header_name
    if name and state.lookup is not None and not getattr(response, "_cachekit_served", False):
        response.headers[name] = state.lookup.state
    return response


def passes_through(response: HttpResponseBase) -> bool:
    # Streaming and file responses are never buffered (S11); pages bind() served are final.
    return response.streaming or getattr(response, "_cachekit_served", False)
