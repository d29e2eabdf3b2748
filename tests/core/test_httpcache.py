"""The framework-neutral response cache both adapters drive (SPEC §2)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cachekit_core import Cache
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


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "memory":
        built = Cache(namespace="http")
    else:
        built = Cache.from_url(
            request.getfixturevalue("redis_url"), namespace="http", secret_key="test-secret"
        )
    yield built
    built.close()


def req(method: str = "GET", path: str = "/p", query: str = "", **headers: str) -> Request:
    pairs = [(k.replace("_", "-"), v) for k, v in headers.items()]
    return Request(method, "http", "testserver", path, query, pairs)


def render(body: bytes = b"page", status: int = 200, *headers: tuple[str, str]) -> Response:
    return Response(status, [("Content-Type", "text/plain"), *headers], body)


def roundtrip(
    http: HttpCache, request: Request, view: ViewOptions | None, response: Response
) -> Response:
    lookup = http.lookup(request, view)
    if lookup.response is not None:
        return lookup.response
    return http.store(lookup, response)


def header(response: Response, name: str) -> str | None:
    return next((v for k, v in response.headers if k.lower() == name.lower()), None)


VIEW = ViewOptions(ttl=60, tags=("products",), cache_control="public, max-age=60")


def test_miss_then_hit_with_age_etag_and_x_cache(cache: Cache) -> None:
    http = HttpCache(cache)
    first = roundtrip(http, req(), VIEW, render())
    assert header(first, "X-Cache") == MISS
    assert header(first, "Cache-Control") == "public, max-age=60"
    etag = header(first, "ETag")
    assert etag is not None and etag.startswith('"')
    hit = roundtrip(http, req(), VIEW, render(b"never rendered"))
    assert header(hit, "X-Cache") == HIT
    assert hit.body == b"page"
    assert header(hit, "ETag") == etag
    assert header(hit, "Age") == "0"


def test_304_on_hit_and_on_miss(cache: Cache) -> None:
    http = HttpCache(cache)
    etag = header(roundtrip(http, req(), VIEW, render()), "ETag")
    assert etag is not None
    hit = roundtrip(http, req(If_None_Match=f"W/{etag}"), VIEW, render())
    assert hit.status == 304 and hit.body == b""
    assert header(hit, "ETag") == etag and header(hit, "Cache-Control") is not None
    miss = roundtrip(http, req(path="/other", If_None_Match=etag), VIEW, render())
    assert miss.status == 304  # same body, same strong ETag: 304 even on a miss


def test_head_is_answered_from_a_stored_get_and_never_stored(cache: Cache) -> None:
    http = HttpCache(cache)
    head_miss = roundtrip(http, req("HEAD"), VIEW, render(b""))
    assert header(head_miss, "X-Cache") == MISS
    get = roundtrip(http, req(), VIEW, render(b"body"))
    assert get.body == b"body" and header(get, "X-Cache") == MISS  # HEAD stored nothing
    head_hit = roundtrip(http, req("HEAD"), VIEW, render())
    assert header(head_hit, "X-Cache") == HIT and head_hit.body == b""


def test_vary_variants_are_separate_and_absent_differs_from_empty(cache: Cache) -> None:
    http = HttpCache(cache)
    vary = ("Vary", "Accept-Language")
    roundtrip(http, req(Accept_Language="fr"), VIEW, render(b"bonjour", 200, vary))
    roundtrip(http, req(Accept_Language="en"), VIEW, render(b"hello", 200, vary))
    assert roundtrip(http, req(Accept_Language="fr"), VIEW, render()).body == b"bonjour"
    assert roundtrip(http, req(Accept_Language="en"), VIEW, render()).body == b"hello"
    absent = roundtrip(http, req(), VIEW, render(b"default", 200, vary))
    empty = roundtrip(http, req(Accept_Language=""), VIEW, render(b"empty", 200, vary))
    assert (absent.body, empty.body) == (b"default", b"empty")


def test_tag_invalidation_rerenders(cache: Cache) -> None:
    http = HttpCache(cache)
    roundtrip(http, req(), VIEW, render(b"v1"))
    cache.invalidate_tags("products")
    again = roundtrip(http, req(), VIEW, render(b"v2"))
    assert again.body == b"v2" and header(again, "X-Cache") == MISS


def test_an_invalidation_during_rendering_leaves_the_new_page_stale(cache: Cache) -> None:
    http = HttpCache(cache)
    lookup = http.lookup(req(), VIEW)
    cache.invalidate_tags("products")  # lands while the view renders pre-change data
    http.store(lookup, render(b"pre-change"))
    assert roundtrip(http, req(), VIEW, render(b"fresh")).body == b"fresh"


def test_unsafe_method_invalidates_the_url(cache: Cache) -> None:
    http = HttpCache(cache)
    roundtrip(http, req(query="a=1"), VIEW, render(b"v1"))
    http.invalidate_url(req("POST", query="a=1"))
    assert roundtrip(http, req(query="a=1"), VIEW, render(b"v2")).body == b"v2"


def test_requests_with_credentials_or_session_bypass(cache: Cache) -> None:
    http = HttpCache(cache, HttpSettings(session_cookie="sessionid"))
    roundtrip(http, req(), VIEW, render(b"public"))
    auth = roundtrip(http, req(Authorization="Bearer x"), VIEW, render(b"private"))
    assert auth.body == b"private" and header(auth, "X-Cache") == BYPASS
    session = roundtrip(http, req(Cookie="sessionid=abc"), VIEW, render(b"mine"))
    assert header(session, "X-Cache") == BYPASS
    assert header(roundtrip(http, req(Authorization=""), VIEW, render()), "X-Cache") == HIT


def test_per_user_entries_are_keyed_by_user_and_private(cache: Cache) -> None:
    http = HttpCache(cache, HttpSettings(session_cookie="sessionid"))
    view = ViewOptions(ttl=60, per_user=True)
    ada = Request("GET", "http", "h", "/me", "", [("Cookie", "sessionid=1")], user="ada")
    bob = Request("GET", "http", "h", "/me", "", [("Cookie", "sessionid=2")], user="bob")
    first = roundtrip(http, ada, view, render(b"ada"))
    assert "private" in (header(first, "Cache-Control") or "")
    assert roundtrip(http, bob, view, render(b"bob")).body == b"bob"
    assert roundtrip(http, ada, view, render(b"x")).body == b"ada"


@pytest.mark.parametrize(
    "headers",
    [
        [("Set-Cookie", "a=1")],
        [("Cache-Control", "no-store")],
        [("Cache-Control", "private")],
        [("Vary", "*")],
    ],
)
def test_unstorable_responses_are_not_stored(cache: Cache, headers: list[tuple[str, str]]) -> None:
    http = HttpCache(cache)
    roundtrip(http, req(), VIEW, Response(200, list(headers), b"v1"))
    assert roundtrip(http, req(), VIEW, render(b"v2")).body == b"v2"


def test_bodies_above_the_limit_are_not_stored(cache: Cache) -> None:
    http = HttpCache(cache, HttpSettings(max_body_size=10))
    roundtrip(http, req(), VIEW, render(b"x" * 11))
    assert header(roundtrip(http, req(), VIEW, render(b"y")), "X-Cache") == MISS


def test_stale_while_revalidate_and_stale_if_error(cache: Cache) -> None:
    now = [time.time()]
    cache.clock = lambda: now[0]
    http = HttpCache(cache)
    view = ViewOptions(ttl=10, stale_ttl=60)
    roundtrip(http, req(), view, render(b"v1"))
    now[0] += 11
    renderer = http.lookup(req(), view)  # claims the re-render
    assert renderer.response is None
    other = roundtrip(http, req(), view, render(b"unused"))
    assert header(other, "X-Cache") == STALE and other.body == b"v1"
    failed = http.store(renderer, render(b"boom", 503))
    assert header(failed, "X-Cache") == STALE and failed.body == b"v1"  # stale-if-error
    assert roundtrip(http, req(), view, render(b"v2")).body == b"v2"


def test_shared_cache_mode_follows_the_responses_own_headers(cache: Cache) -> None:
    http = HttpCache(cache, HttpSettings(shared_cache=True))
    roundtrip(http, req(), None, render(b"no freshness"))
    assert header(roundtrip(http, req(), None, render(b"x")), "X-Cache") == MISS
    roundtrip(http, req(path="/s"), None, render(b"v1", 200, ("Cache-Control", "s-maxage=60")))
    assert roundtrip(http, req(path="/s"), None, render(b"v2")).body == b"v1"
    roundtrip(http, req(path="/m"), None, render(b"v1", 200, ("Cache-Control", "max-age=3600a")))
    assert roundtrip(http, req(path="/m"), None, render(b"v2")).body == b"v2"


def test_only_if_cached_gets_504_on_a_miss(cache: Cache) -> None:
    http = HttpCache(cache)
    assert http.lookup(req(Cache_Control="only-if-cached"), VIEW).response.status == 504  # type: ignore[union-attr]


async def test_async_twin(cache: Cache) -> None:
    http = HttpCache(cache)
    lookup = await http.alookup(req(), VIEW)
    first = await http.astore(lookup, render(b"async"))
    assert header(first, "X-Cache") == MISS
    again = await http.alookup(req(), VIEW)
    assert again.response is not None and again.response.body == b"async"
    await cache.aclose()


def test_views_bound_after_routing_snapshot_their_tags_before_rendering(cache: Cache) -> None:
    http = HttpCache(cache, HttpSettings(session_cookie="sessionid"))
    lookup = http.lookup(req(), None)  # the middleware, before routing: no view known yet
    lookup = http.bind_view(lookup, VIEW)  # the endpoint wrapper, before the endpoint body
    cache.invalidate_tags("products")  # lands while rendering
    http.store(lookup, render(b"pre-change"))
    assert roundtrip(http, req(), VIEW, render(b"fresh")).body == b"fresh"
    # A per-user view bound after a bypassing lookup is looked up under the user's key.
    view = ViewOptions(ttl=60, per_user=True)
    ada = Request("GET", "http", "h", "/me", "", [("Cookie", "sessionid=1")], user="ada")
    first = http.lookup(ada, None)
    assert first.state == BYPASS
    bound = http.bind_view(first, view)
    assert bound.state == MISS
    http.store(bound, render(b"ada's page"))
    again = http.bind_view(http.lookup(ada, None), view)
    assert again.response is not None and again.response.body == b"ada's page"
