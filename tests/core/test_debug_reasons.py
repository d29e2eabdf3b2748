"""X-Cache-Reason (R11): why a response was a MISS / BYPASS / not stored, decided by the core.

Off by default; with ``HttpSettings(debug_headers=True)`` every response the cache handles
carries one token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cachekit_core import Cache, http
from cachekit_core.httpcache import (
    BYPASS,
    HIT,
    MISS,
    STALE,
    HttpCache,
    HttpSettings,
    Request,
    Response,
    ViewOptions,
)

REASON = "X-Cache-Reason"
DEBUG = HttpSettings(debug_headers=True, session_cookie="sessionid")
VIEW = ViewOptions(ttl=10)


@pytest.fixture
def cache() -> Iterator[Cache]:
    built = Cache(namespace="reasons")
    yield built
    built.close()


@pytest.fixture
def now(cache: Cache) -> list[float]:
    clock = [time.time()]
    cache.clock = lambda: clock[0]
    return clock


def req(method: str = "GET", *headers: tuple[str, str], path: str = "/p") -> Request:
    return Request(method, "http", "testserver", path, "", list(headers))


def render(*headers: tuple[str, str], body: bytes = b"page", status: int = 200) -> Response:
    return Response(status, [("Content-Type", "text/plain"), *headers], body)


def roundtrip(
    httpcache: HttpCache, request: Request, response: Response, view: ViewOptions | None = VIEW
) -> Response:
    lookup = httpcache.lookup(request, view)
    if lookup.response is not None:
        return lookup.response
    return httpcache.store(lookup, response)


def said(response: Response) -> tuple[str | None, str | None]:
    return http.get_one(response.headers, "X-Cache"), http.get_one(response.headers, REASON)


def test_R11_off_by_default(cache: Cache) -> None:
    httpcache = HttpCache(cache)
    assert said(roundtrip(httpcache, req(), render())) == (MISS, None)
    assert said(roundtrip(httpcache, req(), render())) == (HIT, None)


def test_R11_cold_fresh_expired(cache: Cache, now: list[float]) -> None:
    httpcache = HttpCache(cache, DEBUG)
    assert said(roundtrip(httpcache, req(), render())) == (MISS, "cold")
    hit = roundtrip(httpcache, req(), render())
    assert said(hit) == (HIT, "fresh")
    assert http.get_all(hit.headers, REASON) == ["fresh"]  # the stored copy holds none
    now[0] += 11
    # Past every window the engine no longer has the entry: it cannot tell expired from cold.
    assert said(roundtrip(httpcache, req(), render())) == (MISS, "cold")
    view = ViewOptions(ttl=10, stale_ttl=60)
    roundtrip(httpcache, req(path="/s"), render(), view)
    now[0] += 11
    # A stale copy found: this request re-renders it.
    assert said(roundtrip(httpcache, req(path="/s"), render(), view)) == (MISS, "expired")


def test_R11_stale_while_revalidate_and_stale_if_error(cache: Cache, now: list[float]) -> None:
    httpcache = HttpCache(cache, DEBUG)
    view = ViewOptions(ttl=10, stale_ttl=60)
    roundtrip(httpcache, req(), render(body=b"v1"), view)
    now[0] += 11
    renderer = httpcache.lookup(req(), view)
    assert renderer.response is None
    assert said(roundtrip(httpcache, req(), render(), view)) == (STALE, "stale-while-revalidate")
    failed = httpcache.store(renderer, render(status=503))
    assert said(failed) == (STALE, "stale-if-error")


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ([("Set-Cookie", "a=1")], 200, "sets-cookie"),
        ([("Cache-Control", "private")], 200, "private"),
        ([("Cache-Control", "no-store")], 200, "no-store"),
        ([("Cache-Control", "no-cache")], 200, "no-cache"),
        ([("Vary", "Accept, *")], 200, "vary-star"),
        ([], 404, "status"),
        ([], 500, "status"),
        ([("Surrogate-Control", "no-store")], 200, "no-store"),
    ],
)
def test_R11_not_stored_says_why(
    cache: Cache, headers: list[tuple[str, str]], status: int, reason: str
) -> None:
    httpcache = HttpCache(cache, DEBUG)
    assert said(roundtrip(httpcache, req(), render(*headers, status=status))) == (MISS, reason)
    assert said(roundtrip(httpcache, req(), render())) == (MISS, "cold")  # it was not stored


def test_R11_too_large(cache: Cache) -> None:
    httpcache = HttpCache(cache, HttpSettings(debug_headers=True, max_body_size=3))
    assert said(roundtrip(httpcache, req(), render(body=b"four"))) == (MISS, "too-large")


def test_R11_head_is_never_stored(cache: Cache) -> None:
    httpcache = HttpCache(cache, DEBUG)
    response = roundtrip(httpcache, req("HEAD"), render())
    assert said(response) == (MISS, "method")


@pytest.mark.parametrize(
    ("method", "headers", "reason"),
    [
        ("GET", [("Authorization", "Bearer x")], "authorization"),
        ("GET", [("Cookie", "sessionid=abc")], "session-cookie"),
        ("POST", [], "method"),
        ("GET", [("If-Match", '"x"')], "precondition"),
    ],
)
def test_R11_bypass_says_why(
    cache: Cache, method: str, headers: list[tuple[str, str]], reason: str
) -> None:
    httpcache = HttpCache(cache, DEBUG)
    assert said(roundtrip(httpcache, req(method, *headers), render())) == (BYPASS, reason)


def test_R11_per_user_view_without_a_user(cache: Cache) -> None:
    httpcache = HttpCache(cache, DEBUG)
    view = ViewOptions(ttl=10, per_user=True)
    assert said(roundtrip(httpcache, req(), render(), view)) == (BYPASS, "no-user")


def test_R11_personal_and_the_adapters_own_reason(cache: Cache) -> None:
    httpcache = HttpCache(cache, DEBUG)
    lookup = httpcache.lookup(req(), VIEW)
    assert said(httpcache.store(lookup, render(), personal=True)) == (BYPASS, "personal")
    lookup = httpcache.lookup(req(), VIEW)
    lookup.reason = "uncommitted-writes"  # what Django's adapter knows and the core does not
    assert said(httpcache.store(lookup, render(), personal=True)) == (
        BYPASS,
        "uncommitted-writes",
    )


def test_R11_vary_miss(cache: Cache) -> None:
    httpcache = HttpCache(cache, DEBUG)
    vary = ("Vary", "Accept-Language")
    fr = req("GET", ("Accept-Language", "fr"))
    de = req("GET", ("Accept-Language", "de"))
    assert said(roundtrip(httpcache, fr, render(vary))) == (MISS, "cold")
    assert said(roundtrip(httpcache, de, render(vary))) == (MISS, "vary-miss")
    assert said(roundtrip(httpcache, de, render(vary))) == (HIT, "fresh")


def test_R11_tag_invalidated_while_rendering(cache: Cache) -> None:
    httpcache = HttpCache(cache, DEBUG)
    view = ViewOptions(ttl=10, tags=("t",))
    lookup = httpcache.lookup(req(), view)
    cache.invalidate_tags(["t"])
    lookup = httpcache.bind_view(lookup, view)
    assert said(httpcache.store(lookup, render())) == (MISS, "tag-invalidated")
    assert said(roundtrip(httpcache, req(), render(), view)) == (MISS, "cold")


def test_R11_shared_cache_mode_reasons(cache: Cache) -> None:
    httpcache = HttpCache(cache, HttpSettings(debug_headers=True, shared_cache=True))
    assert said(roundtrip(httpcache, req(), render(), None)) == (MISS, "no-freshness")
    aged = render(("Cache-Control", "max-age=60"), ("Age", "-1"))
    assert said(roundtrip(httpcache, req(path="/a"), aged, None)) == (MISS, "invalid-age")
    old = render(("Cache-Control", "max-age=60"), ("Age", "61"))
    assert said(roundtrip(httpcache, req(path="/o"), old, None)) == (MISS, "already-stale")
    plain = HttpCache(cache, HttpSettings(debug_headers=True))
    assert said(roundtrip(plain, req(path="/u"), render(), None)) == (MISS, "undecorated")


def test_R11_a_304_keeps_the_reason(cache: Cache) -> None:
    httpcache = HttpCache(cache, DEBUG)
    etag = http.get_one(roundtrip(httpcache, req(), render()).headers, "ETag")
    assert etag is not None
    response = roundtrip(httpcache, req("GET", ("If-None-Match", etag)), render())
    assert response.status == 304 and said(response) == (HIT, "fresh")


def test_R11_an_apps_own_reason_header_is_replaced(cache: Cache) -> None:
    httpcache = HttpCache(cache, DEBUG)
    first = roundtrip(httpcache, req(), render((REASON, "lies")))
    assert http.get_all(first.headers, REASON) == ["cold"]
    assert http.get_all(roundtrip(httpcache, req(), render()).headers, REASON) == ["fresh"]


def test_R11_settings_from_django_style_keys() -> None:
    assert HttpSettings.from_mapping({"DEBUG_HEADERS": True}).debug_headers is True
    assert HttpSettings().debug_headers is False
