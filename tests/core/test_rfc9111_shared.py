"""RFC 9111 as a shared cache (``shared_cache=True``), Surrogate-Control and the 304's headers:
S17-S19, R9, R10, C7 of docs/HTTP-RULES.md, through ``HttpCache`` (memory engine)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cachekit_core import Cache, http
from cachekit_core.httpcache import (
    HIT,
    MISS,
    HttpCache,
    HttpSettings,
    Request,
    Response,
    ViewOptions,
)

SHARED = HttpSettings(shared_cache=True)


@pytest.fixture
def cache() -> Iterator[Cache]:
    built = Cache(namespace="rfc9111")
    yield built
    built.close()


@pytest.fixture
def now(cache: Cache) -> list[float]:
    clock = [time.time()]
    cache.clock = lambda: clock[0]
    return clock


def req(method: str = "GET", path: str = "/p", query: str = "", *headers: tuple[str, str]):
    return Request(method, "https", "shop.example", path, query, list(headers))


def render(*headers: tuple[str, str], body: bytes = b"page", status: int = 200) -> Response:
    return Response(status, [("Content-Type", "text/plain"), *headers], body)


def roundtrip(
    httpcache: HttpCache, request: Request, response: Response, view: ViewOptions | None = None
) -> Response:
    lookup = httpcache.lookup(request, view)
    if lookup.response is not None:
        return lookup.response
    return httpcache.store(lookup, response)


def header(response: Response, name: str) -> str | None:
    return http.get_one(response.headers, name)


def names(response: Response) -> set[str]:
    return {k.lower() for k, _ in response.headers}


# --------------------------------------------------------------------------- S18 invalid Age


@pytest.mark.parametrize(
    "ages",
    [["abc"], ["-1"], ["1.5"], ["5;p=1"], [""], ["5, 7"], ["5", "7"], ["5,"], ["0x10"]],
)
def test_S18_an_unreadable_upstream_age_is_stale_not_stored(cache: Cache, ages: list[str]) -> None:
    httpcache = HttpCache(cache, SHARED)
    headers = [("Cache-Control", "max-age=600"), *(("Age", a) for a in ages)]
    first = roundtrip(httpcache, req(), render(*headers, body=b"v1"))
    assert header(first, "X-Cache") == MISS
    again = roundtrip(httpcache, req(), render(body=b"v2"))
    assert header(again, "X-Cache") == MISS and again.body == b"v2"
    decision = http.storable(
        200, headers, method="GET", shared=True, origin_driven=True, now=time.time()
    )
    assert not decision.ok and decision.code == "invalid-age"


@pytest.mark.parametrize(
    ("ages", "value"),
    [([], 0), (["0"], 0), (["30"], 30), (["30", "30"], 30), (["30, 30"], 30), ([" 7 "], 7)],
)
def test_S18_a_readable_age_is_one_non_negative_integer(ages: list[str], value: int) -> None:
    assert http.upstream_age([("Age", a) for a in ages]) == value


def test_S18_decorated_views_ignore_an_unreadable_age(cache: Cache) -> None:
    httpcache = HttpCache(cache)
    view = ViewOptions(ttl=60)
    roundtrip(httpcache, req(), render(("Age", "junk"), body=b"v1"), view)
    hit = roundtrip(httpcache, req(), render(body=b"v2"), view)
    assert header(hit, "X-Cache") == HIT and header(hit, "Age") == "0"


# --------------------------------------------------------------------------- R9 Age sent


def test_R9_age_sent_adds_the_upstream_age_to_the_time_in_cache(
    cache: Cache, now: list[float]
) -> None:
    httpcache = HttpCache(cache, SHARED)
    roundtrip(httpcache, req(), render(("Cache-Control", "max-age=100"), ("Age", "30")))
    now[0] += 5
    hit = roundtrip(httpcache, req(), render(body=b"unused"))
    assert header(hit, "X-Cache") == HIT
    assert header(hit, "Age") == "35"
    assert http.get_all(hit.headers, "age") == ["35"]  # replaced, never repeated
    now[0] += 66  # 30 + 71 > 100: stale by its whole age, not by 71 s in storage
    assert header(roundtrip(httpcache, req(), render(body=b"v2")), "X-Cache") == MISS


def test_R9_an_old_date_counts_as_age_when_larger(cache: Cache, now: list[float]) -> None:
    httpcache = HttpCache(cache, SHARED)
    date = http.http_date(now[0] - 40)
    roundtrip(httpcache, req(), render(("Cache-Control", "max-age=100"), ("Date", date)))
    hit = roundtrip(httpcache, req(), render(body=b"unused"))
    assert header(hit, "Age") == "40" and header(hit, "Date") == date  # R2: Date unchanged


# --------------------------------------------------------------------------- S17 Connection


def test_S17_connection_listed_and_hop_by_hop_fields_are_never_replayed(cache: Cache) -> None:
    httpcache = HttpCache(cache, SHARED)
    response = render(
        ("Cache-Control", "max-age=60"),
        ("Connection", "X-Secret, keep-alive"),
        ("connection", " X-Other "),
        ("X-Secret", "for the next hop only"),
        ("X-OTHER", "also"),
        ("Keep-Alive", "timeout=5"),
        ("Upgrade", "h2c"),
        ("TE", "trailers"),
        ("Transfer-Encoding", "chunked"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authenticate", "Basic"),
        ("X-Kept", "yes"),
    )
    roundtrip(httpcache, req(), response)
    hit = roundtrip(httpcache, req(), render(body=b"unused"))
    assert header(hit, "X-Cache") == HIT
    banned = {"connection", "x-secret", "x-other", "keep-alive", "upgrade", "te",
              "transfer-encoding", "proxy-connection", "proxy-authenticate"}  # fmt: skip
    assert not names(hit) & banned
    assert header(hit, "X-Kept") == "yes"


# --------------------------------------------------------------------------- R10 Location


@pytest.mark.parametrize(
    ("field", "value", "target"),
    [
        ("Location", "/items/5", ("/items/5", "")),
        ("Location", "https://shop.example/items/5", ("/items/5", "")),
        ("Location", "https://SHOP.example:443/items/5", ("/items/5", "")),
        ("Content-Location", "5?tab=2", ("/items/5", "tab=2")),
        ("Content-Location", "//shop.example/items/5", ("/items/5", "")),
        ("Location", "../items/5", ("/items/5", "")),
    ],
)
def test_R10_unsafe_method_invalidates_same_origin_location_targets(
    cache: Cache, field: str, value: str, target: tuple[str, str]
) -> None:
    httpcache = HttpCache(cache)
    view = ViewOptions(ttl=60)
    path, query = target
    roundtrip(httpcache, req("GET", path, query), render(body=b"v1"), view)
    assert roundtrip(httpcache, req("GET", path, query), render(), view).body == b"v1"
    post = req("POST", "/items/new")
    response = render((field, value), status=201)
    assert http.invalidates_stored(post.method, response.status)
    httpcache.invalidate_url(post, None, response.headers)
    again = roundtrip(httpcache, req("GET", path, query), render(body=b"v2"), view)
    assert header(again, "X-Cache") == MISS and again.body == b"v2"


@pytest.mark.parametrize(
    "value",
    [
        "https://evil.example/items/5",
        "http://shop.example/items/5",  # another scheme
        "https://shop.example:8443/items/5",  # another port
        "https://user@shop.example/items/5",
        "https://[::1/items/5",  # unreadable
    ],
)
def test_R10_other_origins_are_never_invalidated(cache: Cache, value: str) -> None:
    httpcache = HttpCache(cache)
    view = ViewOptions(ttl=60)
    roundtrip(httpcache, req("GET", "/items/5"), render(body=b"v1"), view)
    httpcache.invalidate_url(req("POST", "/other"), None, [("Location", value)])
    hit = roundtrip(httpcache, req("GET", "/items/5"), render(body=b"v2"), view)
    assert header(hit, "X-Cache") == HIT and hit.body == b"v1"


def test_R10_targets_cover_raw_and_decoded_paths() -> None:
    found = http.invalidation_targets(
        "https", "shop.example", "/a", "", [("Location", "/caf%C3%A9")]
    )
    assert found == [("/caf%C3%A9", ""), ("/café", "")]


# --------------------------------------------------------------------------- S19 Surrogate


def test_S19_surrogate_max_age_overrides_cache_control_and_never_leaves(
    cache: Cache, now: list[float]
) -> None:
    httpcache = HttpCache(cache, SHARED)
    response = render(("Cache-Control", "no-store, max-age=0"), ("Surrogate-Control", "max-age=60"))
    first = roundtrip(httpcache, req(), response)
    assert header(first, "X-Cache") == MISS
    assert header(first, "Surrogate-Control") is None
    assert header(first, "Cache-Control") == "no-store, max-age=0"  # for the browser, as sent
    hit = roundtrip(httpcache, req(), render(body=b"unused"))
    assert header(hit, "X-Cache") == HIT and header(hit, "Surrogate-Control") is None
    now[0] += 61
    assert header(roundtrip(httpcache, req(), render()), "X-Cache") == MISS


@pytest.mark.parametrize("surrogate", ["no-store", "NO-STORE, max-age=60", "max-age=60, no-store"])
def test_S19_surrogate_no_store_refuses_storage(cache: Cache, surrogate: str) -> None:
    httpcache = HttpCache(cache, SHARED)
    response = render(("Cache-Control", "public, max-age=600"), ("Surrogate-Control", surrogate))
    assert header(roundtrip(httpcache, req(), response), "Surrogate-Control") is None
    assert header(roundtrip(httpcache, req(), render()), "X-Cache") == MISS


def test_S19_targeted_directives_are_for_other_devices(cache: Cache) -> None:
    httpcache = HttpCache(cache, SHARED)
    response = render(
        ("Cache-Control", "max-age=600"), ("Surrogate-Control", 'no-store;edge1, content="x;y"')
    )
    roundtrip(httpcache, req(), response)
    assert header(roundtrip(httpcache, req(), render()), "X-Cache") == HIT
    cc = http.surrogate_control([("Surrogate-Control", "max-age=60+30, max-age=5;edge1")])
    assert cc is not None and cc.max_age == 60


def test_S19_private_and_cookies_still_refuse(cache: Cache) -> None:
    httpcache = HttpCache(cache, SHARED)
    roundtrip(httpcache, req(path="/a"), render(
        ("Cache-Control", "private"), ("Surrogate-Control", "max-age=60")
    ))  # fmt: skip
    assert header(roundtrip(httpcache, req(path="/a"), render()), "X-Cache") == MISS
    roundtrip(httpcache, req(path="/b"), render(
        ("Set-Cookie", "a=1"), ("Surrogate-Control", "max-age=60")
    ))  # fmt: skip
    assert header(roundtrip(httpcache, req(path="/b"), render()), "X-Cache") == MISS


def test_S19_decorated_view_ttl_from_surrogate_control(cache: Cache, now: list[float]) -> None:
    httpcache = HttpCache(cache)
    view = ViewOptions()
    response = render(("Cache-Control", "no-cache"), ("Surrogate-Control", "max-age=30"))
    roundtrip(httpcache, req(), response, view)
    now[0] += 20
    assert header(roundtrip(httpcache, req(), render(), view), "X-Cache") == HIT
    now[0] += 11
    assert header(roundtrip(httpcache, req(), render(), view), "X-Cache") == MISS


def test_S19_can_be_turned_off_for_a_cdn_in_front(cache: Cache) -> None:
    httpcache = HttpCache(cache, HttpSettings(shared_cache=True, surrogate_control=False))
    response = render(("Cache-Control", "no-store"), ("Surrogate-Control", "max-age=60"))
    assert header(roundtrip(httpcache, req(), response), "Surrogate-Control") == "max-age=60"
    assert header(roundtrip(httpcache, req(), render()), "X-Cache") == MISS


# --------------------------------------------------------------------------- C7 304 headers

RFC9110_15_4_5 = ("cache-control", "content-location", "date", "etag", "expires", "vary")


def full_200() -> Response:
    return render(
        ("Cache-Control", "public, max-age=60"),
        ("Content-Location", "/p.en"),
        ("Date", http.http_date(time.time())),
        ("Expires", http.http_date(time.time() + 60)),
        ("Vary", "Accept-Language"),
        ("Content-Length", "4"),
        ("Surrogate-Control", "max-age=60"),
    )


@pytest.mark.parametrize("name", ["X-Cache", "X-Edge"])
def test_C7_cachekits_304s_carry_what_rfc9110_requires(cache: Cache, name: str) -> None:
    httpcache = HttpCache(cache, HttpSettings(header_name=name))
    view = ViewOptions(ttl=60)
    miss = roundtrip(httpcache, req(), full_200(), view)
    etag = header(miss, "ETag")
    assert etag is not None
    conditional = req("GET", "/p", "", ("If-None-Match", etag))
    for state in (MISS, HIT):  # rendered again (another key space) and from storage
        if state == MISS:
            response = roundtrip(HttpCache(Cache(), httpcache.settings), conditional, full_200(),
                                 view)  # fmt: skip
        else:
            response = roundtrip(httpcache, conditional, full_200(), view)
        assert response.status == 304 and response.body == b""
        assert set(RFC9110_15_4_5) <= names(response)
        assert header(response, name) == state  # the configured X-Cache name survives
        assert "content-length" not in names(response) and "content-type" not in names(response)
        assert "surrogate-control" not in names(response)


def test_C7_a_views_own_304_gets_the_headers_its_200_would(cache: Cache) -> None:
    httpcache = HttpCache(cache, HttpSettings(cdn_cache_control="max-age=600"))
    view = ViewOptions(ttl=60, cache_control="public, max-age=60")
    lookup = httpcache.lookup(req("GET", "/p", "", ("If-None-Match", '"v1"')), view)
    sent = httpcache.store(lookup, Response(304, [("ETag", '"v1"')], b""))
    assert sent.status == 304
    assert header(sent, "Cache-Control") == "public, max-age=60"
    assert header(sent, "CDN-Cache-Control") == "max-age=600"
    assert header(sent, "ETag") == '"v1"'
