"""HTTP-RULES.md through a real FastAPI app behind ``CacheKit`` (memory and Redis caches).

Every test name starts with its rule id. All 44 rules apply to an ASGI app and each has at
least one test here; the sans-I/O core suite (tests/core/test_http_rules.py) covers the
parsers exhaustively, so here each rule is checked end to end with representative inputs.

Notes on scope:
- S2: a 1xx can never be a final ASGI response (only ``103`` via an extension), so the 1xx
  part is covered by the core suite; 2xx-5xx statuses are tested here.
- S8: "reuse only with public/s-maxage/must-revalidate" cannot arise through the adapter:
  a request with credentials always bypasses the shared cache (stricter), which is tested.
- S7/S10: the contract is ``scope["cachekit.session_accessed"]`` (adds ``Vary: Cookie``) and
  ``scope["cachekit.session_modified"]`` / ``scope["session"].modified`` (not stored: a
  session middleware outside the cache adds its Set-Cookie after the cache saw the
  response); both are also driven through cachekit's own ``SessionMiddleware``.
- S11: "untouched" is checked message for message against the same app without cachekit.
- K2/K5: Starlette builds ``request.url`` from ``Host`` only, so forwarded headers cannot
  change the page unless a proxy middleware (outside the cache) rewrites ``Host``; both
  set-ups are tested.
- C6: If-Match / If-Unmodified-Since are never answered by the cache (core decision: a
  matching If-None-Match still wins when both are present, see the core suite).
- R3 for views: ``stale_ttl`` is the window; for shared-cache mode the response's
  ``stale-while-revalidate`` is, and ``must-revalidate``/``proxy-revalidate``/``s-maxage``
  forbid it.
More middleware behaviour (router never entered, two apps on one Redis) is in
test_middleware.py; hostile header values are in test_bad_input.py.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cachekit_core import Cache, ConfigurationError
from cachekit_core.http import http_date, is_valid_etag, strong_etag
from cachekit_fastapi import CacheKit

from ._asgi import Clock, call_asgi, client, make_cache

PUBLIC = {"ttl": 60, "cache_control": "public, max-age=60"}
UNSAFE = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"]
LM = "Tue, 15 Nov 1994 12:45:26 GMT"


def session_user(scope: Scope) -> str | None:
    return HTTPConnection(scope).cookies.get("session")


class Site:
    """A FastAPI app whose responses each test shapes through ``respond``.

    GET /r is decorated, GET /u is not, /h also accepts HEAD, /me is per-user,
    /products/{pid} and /items/{pid} carry tags, and /{full:path} is a decorated catch-all.
    """

    def __init__(self, cache: Cache, view: dict[str, Any] | None = None, **options: Any) -> None:
        self.app = FastAPI()
        self.kit = CacheKit(self.app, cache, user=session_user, **options)
        self.calls = 0
        self.unsafe_calls = 0
        self.unsafe_status = 200
        self.respond: Callable[[Request], Response] = self.default
        self.gate: asyncio.Event | None = None  # blocks the first render that reaches it
        self.waiting = asyncio.Event()
        view = PUBLIC if view is None else view
        app, kit = self.app, self.kit

        @app.get("/r")
        @kit.cache(**view)
        async def decorated(request: Request) -> Response:
            return await self.render(request)

        @app.api_route("/r", methods=UNSAFE)
        async def unsafe(request: Request) -> Response:
            self.unsafe_calls += 1
            response = self.respond(request)
            response.status_code = self.unsafe_status
            return response

        @app.get("/u")
        async def undecorated(request: Request) -> Response:
            return await self.render(request)

        @app.api_route("/h", methods=["GET", "HEAD"])
        @kit.cache(**view)
        async def head_too(request: Request) -> Response:
            return await self.render(request)

        @app.get("/me")
        @kit.cache(ttl=60, per_user=True)
        async def me(request: Request) -> Response:
            self.calls += 1
            return PlainTextResponse(f"me {request.cookies.get('session')} {self.calls}")

        @app.get("/products/{pid}")
        @kit.cache(ttl=60, tags=lambda pid: [f"products:{pid}", "products"])
        async def product(pid: int, request: Request) -> Response:
            return await self.render(request)

        @app.get("/items/{pid}")
        @kit.cache(ttl=60, tags=["items:{pid}"])
        def item(pid: int, request: Request) -> Response:  # a def endpoint: threadpool
            self.calls += 1
            return self.respond(request)

        @app.get("/{full:path}")
        @kit.cache(**view)
        async def anything(full: str, request: Request) -> Response:
            return await self.render(request)

    async def render(self, request: Request) -> Response:
        if self.gate is not None:
            gate, self.gate = self.gate, None
            self.waiting.set()
            await gate.wait()
        self.calls += 1
        return self.respond(request)

    def default(self, request: Request) -> Response:
        return PlainTextResponse(f"render {self.calls}")

    def with_headers(
        self, *headers: tuple[str, str], status: int = 200, body: str | None = None
    ) -> None:
        """Respond with these header lines (repeats kept as separate lines); ``body``: the
        same bytes on every render (so the same strong ETag on any path)."""

        def respond(request: Request) -> Response:
            text = f"render {self.calls}" if body is None else body
            response = PlainTextResponse(text, status_code=status)
            for name, value in headers:
                response.headers.append(name, value)
            return response

        self.respond = respond


def xc(response: httpx.Response) -> str | None:
    state: str | None = response.headers.get("x-cache")
    return state


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[Cache]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    built = make_cache(request.param, url, clock)
    yield built
    await built.aclose()


async def twice(site: Site, path: str, **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
    async with client(site.app) as c:
        first = await c.get(path, **kwargs)
        c.cookies.clear()
        second = await c.get(path, **kwargs)
    return first, second


async def assert_not_stored(site: Site, path: str = "/r", **kwargs: Any) -> None:
    first, second = await twice(site, path, **kwargs)
    assert first.status_code < 500 and second.status_code < 500
    assert (first.text, second.text) == ("render 1", "render 2")
    assert xc(second) != "HIT"


async def assert_stored(site: Site, path: str = "/r", **kwargs: Any) -> None:
    first, second = await twice(site, path, **kwargs)
    assert (first.text, second.text) == ("render 1", "render 1")
    assert (xc(first), xc(second)) == ("MISS", "HIT")


# ------------------------------------------------------------------------------ storing


@pytest.mark.parametrize("method", UNSAFE)
async def test_S1_only_get_and_head_are_answered_from_storage(cache: Cache, method: str) -> None:
    site = Site(cache)
    async with client(site.app) as c:
        await c.get("/r")
        assert xc(await c.get("/r")) == "HIT"
        assert xc(await c.head("/r")) == "HIT"
        for _ in range(2):
            response = await c.request(method, "/r")
            assert response.status_code == 200 and xc(response) == "BYPASS"
    assert site.unsafe_calls == 2


@pytest.mark.parametrize("status", [201, 203, 204, 206, 301, 302, 304, 404, 410, 500, 503])
async def test_S2_only_final_200_is_stored(cache: Cache, status: int) -> None:
    site = Site(cache)
    site.with_headers(("Location", "/elsewhere"), status=status)
    async with client(site.app) as c:
        for _ in range(2):
            assert (await c.get("/r")).status_code == status
    assert site.calls == 2


@pytest.mark.parametrize(("status", "stored"), [(203, True), (301, True), (404, False)])
async def test_S2_the_cacheable_status_set_is_configurable(
    cache: Cache, status: int, stored: bool
) -> None:
    # What cannot be stored (206, 304, 4xx, 5xx) cannot be listed at all (below).
    site = Site(cache, cacheable_statuses=frozenset({200, 203, 301}))
    site.with_headers(status=status)
    async with client(site.app) as c:
        for _ in range(2):
            assert (await c.get("/r")).status_code == status
    assert site.calls == (1 if stored else 2)


@pytest.mark.parametrize("status", [206, 304, 404, 500, 199])
def test_S2_unstorable_statuses_cannot_be_configured(status: int) -> None:
    # A cached 206/304/4xx/5xx is a cache-poisoning vector (CPDoS): refused at start-up.
    with pytest.raises(ConfigurationError, match="CACHEABLE_STATUSES"):
        CacheKit(FastAPI(), Cache(), cacheable_statuses=[200, status])


def shared_or_view(mode: str, cache: Cache) -> tuple[Site, str, tuple[tuple[str, str], ...]]:
    """A decorated view, or an undecorated one in shared-cache mode (given freshness)."""
    if mode == "view":
        return Site(cache), "/r", ()
    return Site(cache, shared_cache=True), "/u", (("Cache-Control", "s-maxage=60"),)


@pytest.mark.parametrize("mode", ["view", "shared"])
@pytest.mark.parametrize(
    "lines",
    [
        ["NO-STORE"],
        ["No-Store"],
        ["public, max-age=60, no-store"],
        ["max-age=60", "no-store"],
        ['no-store="x"'],
    ],
)
async def test_S3_no_store_in_any_case_position_or_line(
    cache: Cache, mode: str, lines: list[str]
) -> None:
    site, path, base = shared_or_view(mode, cache)
    site.with_headers(*base, *(("Cache-Control", line) for line in lines))
    await assert_not_stored(site, path)


@pytest.mark.parametrize("mode", ["view", "shared"])
@pytest.mark.parametrize(
    "lines", [["private"], ['private="Set-Cookie"'], ["PRIVATE, max-age=60"], ["public", "private"]]
)
async def test_S4_private_is_never_stored_in_the_shared_cache(
    cache: Cache, mode: str, lines: list[str]
) -> None:
    site, path, base = shared_or_view(mode, cache)
    site.with_headers(*base, *(("Cache-Control", line) for line in lines))
    await assert_not_stored(site, path)


@pytest.mark.parametrize("mode", ["view", "shared"])
@pytest.mark.parametrize("line", ["no-cache", 'no-cache="Set-Cookie"', "max-age=60, NO-CACHE"])
async def test_S5_no_cache_responses_are_not_stored(cache: Cache, mode: str, line: str) -> None:
    site, path, base = shared_or_view(mode, cache)
    site.with_headers(*base, ("Cache-Control", line))
    await assert_not_stored(site, path)


@pytest.mark.parametrize("mode", ["view", "shared"])
@pytest.mark.parametrize("lines", [["*"], [" * "], ["*, Foo"], ["Foo, *"], [", *"], ["Foo", "*"]])
async def test_S6_vary_star_is_never_stored(cache: Cache, mode: str, lines: list[str]) -> None:
    site, path, base = shared_or_view(mode, cache)
    site.with_headers(*base, *(("Vary", line) for line in lines))
    await assert_not_stored(site, path)


@pytest.mark.parametrize("mode", ["view", "shared"])
@pytest.mark.parametrize("cookie", [None, "theme=dark", "pref=old"])
async def test_S7_set_cookie_is_never_stored(cache: Cache, mode: str, cookie: str | None) -> None:
    site, path, base = shared_or_view(mode, cache)
    site.with_headers(*base, ("Set-Cookie", "pref=new; Path=/"))
    headers = {"Cookie": cookie} if cookie else {}
    async with client(site.app) as c:
        first = await c.get(path, headers=headers)
        c.cookies.clear()
        assert first.headers["set-cookie"] == "pref=new; Path=/"
        site.with_headers(*base)
        second = await c.get(path, headers=headers)
        third = await c.get(path, headers=headers)
    assert (second.text, xc(second)) == ("render 2", "MISS")  # the cookie page was not kept
    assert (third.text, xc(third)) == ("render 2", "HIT")
    assert "set-cookie" not in second.headers and "set-cookie" not in third.headers


async def test_S8_authorization_bypasses_the_shared_cache(cache: Cache) -> None:
    site = Site(cache)

    def respond(request: Request) -> Response:
        who = request.headers.get("authorization")
        return PlainTextResponse(f"for {who} {site.calls}", headers={"Cache-Control": "public"})

    site.respond = respond
    async with client(site.app) as c:
        secret = await c.get("/r", headers={"Authorization": "Bearer secret"})
        anon = await c.get("/r")
        again = await c.get("/r", headers={"Authorization": "Bearer secret"})
        empty = await c.get("/r", headers={"Authorization": ""})
    assert (xc(secret), xc(anon), xc(again)) == ("BYPASS", "MISS", "BYPASS")
    assert "secret" not in anon.text and site.calls == 3
    assert (xc(empty), empty.text) == ("HIT", anon.text)  # empty Authorization: no credential


async def test_S9_session_cookie_bypasses_unless_per_user(cache: Cache) -> None:
    site = Site(cache)
    async with client(site.app) as c:
        await c.get("/r")
        shared = await c.get("/r", headers={"Cookie": "session=ada"})
        assert (xc(shared), shared.text) == ("BYPASS", "render 2")
        ada = [await c.get("/me", headers={"Cookie": "session=ada"}) for _ in range(2)]
        bob = [await c.get("/me", headers={"Cookie": "session=bob"}) for _ in range(2)]
        anon = await c.get("/me")  # per-user view without a user: never stored
    assert [r.text for r in ada] == ["me ada 3", "me ada 3"]
    assert [r.text for r in bob] == ["me bob 4", "me bob 4"]
    assert [xc(r) for r in ada + bob] == ["MISS", "HIT", "MISS", "HIT"]
    assert all("private" in r.headers["cache-control"] for r in ada + bob)
    assert xc(anon) == "BYPASS"


async def test_S10_session_access_adds_vary_cookie(cache: Cache) -> None:
    site = Site(cache)

    def respond(request: Request) -> Response:
        request.scope["cachekit.session_accessed"] = True  # what SessionMiddleware sets
        return PlainTextResponse(f"render {site.calls}", headers={"Vary": "Accept-Language"})

    site.respond = respond
    async with client(site.app) as c:
        a1 = await c.get("/r", headers={"Cookie": "theme=a"})
        a2 = await c.get("/r", headers={"Cookie": "theme=a"})
        b = await c.get("/r", headers={"Cookie": "theme=b"})
        none = await c.get("/r")
    vary = {v.strip().lower() for v in a1.headers["vary"].split(",")}
    assert vary == {"accept-language", "cookie"}
    assert (a1.text, a2.text, xc(a2)) == ("render 1", "render 1", "HIT")
    assert (b.text, none.text) == ("render 2", "render 3")  # one entry per Cookie value


async def test_S10_with_cachekit_sessions(cache: Cache) -> None:
    from cachekit_fastapi import SessionMiddleware

    app = FastAPI()
    kit = CacheKit(app, cache)
    app.add_middleware(SessionMiddleware, cache=cache, secret_key="s3cret")
    calls = []

    @app.get("/greet")
    @kit.cache(ttl=60)
    async def greet(request: Request) -> Response:
        calls.append(1)
        return PlainTextResponse(f"hello {request.session.get('name', 'stranger')}")

    async with client(app) as c:
        first = await c.get("/greet")
        second = await c.get("/greet")
    assert "cookie" in first.headers["vary"].lower()
    assert (second.text, xc(second), len(calls)) == ("hello stranger", "HIT", 1)


@pytest.mark.parametrize("signal", ["session", "flag"])
async def test_S7_a_session_written_outside_the_cache_is_never_stored(
    cache: Cache, signal: str
) -> None:
    """SessionMiddleware added after CacheKit runs outside it: its Set-Cookie is added after
    the cache saw the response, so a changed session must keep the response unstored."""
    from cachekit_fastapi import SessionMiddleware

    app = FastAPI()
    kit = CacheKit(app, cache)
    app.add_middleware(SessionMiddleware, cache=cache, secret_key="s3cret")

    @app.get("/add")
    @kit.cache(ttl=60)
    async def add(request: Request) -> Response:
        if signal == "session":
            request.session["cart"] = [*request.session.get("cart", []), "hat"]
        else:  # the scope flag any session middleware can set
            request.scope["cachekit.session_modified"] = True
        return PlainTextResponse(f"cart of {id(request)}")

    bodies = []
    for _ in range(2):  # two visitors without cookies
        async with client(app) as c:
            response = await c.get("/add")
        assert xc(response) == "BYPASS"
        bodies.append(response.text)
    assert bodies[0] != bodies[1]


def streaming_app(cache: Cache | None, body: list[bytes], **options: Any) -> FastAPI:
    app = FastAPI()
    kit = CacheKit(app, cache, **options) if cache is not None else None

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in body:
            yield chunk

    async def stream() -> Response:
        return StreamingResponse(chunks(), media_type="text/plain")

    async def whole() -> Response:
        return Response(b"".join(body), media_type="text/plain")

    for path, endpoint in (("/stream", stream), ("/whole", whole)):
        app.get(path)(kit.cache(ttl=60)(endpoint) if kit is not None else endpoint)
    return app


async def test_S11_streaming_responses_pass_through_untouched(cache: Cache) -> None:
    body = [b"one ", b"two ", b"three"]
    cached, bare = streaming_app(cache, body), streaming_app(None, body)
    for _ in range(2):
        sent = await call_asgi(cached, path="/stream")
        assert sent.messages == (await call_asgi(bare, path="/stream")).messages
        assert sent.body == b"one two three" and sent.header("x-cache") is None
        assert len(sent.body_messages) == 4  # three chunks and the closing message


@pytest.mark.parametrize(("size", "stored"), [(10, True), (11, False)])
async def test_S11_bodies_over_the_limit_pass_through_unstored(
    cache: Cache, size: int, stored: bool
) -> None:
    body = [b"x" * size]
    cached = streaming_app(cache, body, max_body_size=10)
    bare = streaming_app(None, body)
    first = await call_asgi(cached, path="/whole")
    second = await call_asgi(cached, path="/whole")
    assert first.body == second.body == body[0]
    if stored:
        assert (first.header("x-cache"), second.header("x-cache")) == ("MISS", "HIT")
    else:
        assert first.messages == (await call_asgi(bare, path="/whole")).messages
        assert second.header("x-cache") is None


@pytest.mark.parametrize("line", ["foo, max-age=60", 'max-age="60"', 'max-age=60, foo="a,b"'])
async def test_S12_unknown_directives_ignored_quoted_arguments_accepted(
    cache: Cache, line: str
) -> None:
    site = Site(cache, shared_cache=True)
    site.with_headers(("Cache-Control", line))
    await assert_stored(site, "/u")


@pytest.mark.parametrize("mode", ["view", "shared"])
@pytest.mark.parametrize(
    "line",
    ["max-age=3600a", "max-age=a3600", "max-age=-1", "max-age=3600.5", "max-age=", 'max-age="60'],
)
async def test_S13_malformed_freshness_is_not_stored_and_never_a_500(
    cache: Cache, mode: str, line: str
) -> None:
    site = Site(cache, shared_cache=True) if mode == "shared" else Site(cache)
    site.with_headers(("Cache-Control", line))
    await assert_not_stored(site, "/u" if mode == "shared" else "/r")


@pytest.mark.parametrize(
    "line", ["max-age=99999999999999999999", "s-maxage=2147483648", "max-age=2147483649"]
)
async def test_S14_huge_deltas_clamp_without_overflow(cache: Cache, line: str) -> None:
    site = Site(cache, shared_cache=True)
    site.with_headers(("Cache-Control", line))
    await assert_stored(site, "/u")


@pytest.mark.parametrize(
    ("lines", "stored"),
    [
        (["max-age=60, no-cache"], False),
        (["no-cache", "max-age=60"], False),
        (["max-age=60, max-age=120"], False),
        (["max-age=60", "max-age=60"], True),
    ],
)
async def test_S15_most_restrictive_wins_and_differing_duplicates_are_stale(
    cache: Cache, lines: list[str], stored: bool
) -> None:
    site = Site(cache, shared_cache=True)
    site.with_headers(*(("Cache-Control", line) for line in lines))
    await (assert_stored if stored else assert_not_stored)(site, "/u")


@pytest.mark.parametrize(
    ("headers", "stored"),
    [
        ((("Cache-Control", "s-maxage=60, max-age=0"),), True),
        ((("Cache-Control", "s-maxage=0, max-age=60"),), False),
        ((("Cache-Control", "max-age=60"), ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")), True),
        ((("Expires", "0"),), False),
        ((("Expires", "not a date"),), False),
        ((), False),
        ((("Expires", "FUTURE"),), True),
    ],
)
async def test_S16_shared_freshness_order_and_expires(
    cache: Cache, headers: tuple[tuple[str, str], ...], stored: bool
) -> None:
    future = http_date(time.time() + 120)
    site = Site(cache, shared_cache=True)
    site.with_headers(*((k, future if v == "FUTURE" else v) for k, v in headers))
    await (assert_stored if stored else assert_not_stored)(site, "/u")


async def test_S17_hop_by_hop_and_cookies_are_never_replayed(cache: Cache) -> None:
    site = Site(cache)
    hop = (
        ("Connection", "X-Secret"),
        ("X-Secret", "per-connection"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authenticate", "Basic"),
        ("X-Kept", "yes"),
    )
    site.with_headers(("Set-Cookie", "csrftoken=abc"), ("Vary", "Cookie"), *hop)
    async with client(site.app) as c:
        await c.get("/r", headers={"Cookie": "csrftoken=old"})
        c.cookies.clear()
        site.with_headers(*hop)
        await c.get("/r")
        hit = await c.get("/r")
    assert xc(hit) == "HIT" and hit.headers["x-kept"] == "yes"
    for name in ("connection", "x-secret", "keep-alive", "proxy-authenticate", "set-cookie"):
        assert name not in hit.headers
    assert "cookie" not in hit.headers.get("vary", "").lower()


# ------------------------------------------------------------------------------ keying


async def test_K1_key_covers_method_scheme_host_path_and_sorted_query(cache: Cache) -> None:
    site = Site(cache)
    site.respond = lambda request: PlainTextResponse(f"{request.url} {site.calls}")
    async with client(site.app) as c, client(site.app, "https://testserver") as tls:
        base = (await c.get("/r?b=2&a=1")).text
        assert (await c.get("/r?a=1&b=2")).text == base  # same parameters, sorted
        assert xc(await c.head("/r?a=1&b=2")) == "HIT"  # HEAD shares GET's entry
        assert (await tls.get("/r?a=1&b=2")).text != base
        assert (await c.get("/r?a=1&b=2", headers={"Host": "other.test"})).text != base
        assert (await c.get("/x?a=1&b=2")).text != base
        order = [(await c.get(q)).text for q in ("/r?a=1&a=2", "/r?a=2&a=1")]
    assert order[0] != order[1]  # the order of repeated values is kept


@pytest.mark.parametrize("trusting", [False, True])
async def test_K2_forwarded_headers_never_poison_the_entry(cache: Cache, trusting: bool) -> None:
    site = Site(cache)
    site.respond = lambda request: PlainTextResponse(
        f"{request.url} {request.url_for('decorated')} {site.calls}"
    )
    if trusting:  # the app trusts its proxy: a middleware outside the cache rewrites Host
        site.app.add_middleware(TrustForwardedHost)
    evil = {
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "X-Original-URL": "/admin",
        "X-Rewrite-URL": "/admin",
    }
    async with client(site.app) as c:
        poisoned = await c.get("/r", headers=evil)
        normal = [await c.get("/r") for _ in range(2)]
        again = await c.get("/r", headers=evil)
    for response in normal:
        assert "evil" not in response.text and "https" not in response.text
    assert xc(normal[1]) == "HIT"
    assert ("evil.example" in poisoned.text) is trusting
    assert again.text == poisoned.text


async def test_K2_host_header_is_keyed_and_an_invalid_one_falls_back(cache: Cache) -> None:
    site = Site(cache)
    site.respond = lambda request: PlainTextResponse(f"{request.url} {site.calls}")

    async def get(host: bytes) -> tuple[bytes, str | None]:
        sent = await call_asgi(site.app, path="/r", headers=[(b"host", host)])
        return sent.body, sent.header("x-cache")

    spoofed, normal = await get(b"evil.example"), await get(b"testserver")
    assert b"evil" in spoofed[0] and b"evil" not in normal[0]
    # Starlette answers an invalid Host with the server address (testserver:80 here), and
    # the key uses the same host: the entry is the normal one, never the attacker's.
    assert await get(b"evil.example/x") == (normal[0], "HIT")
    assert await get(b"testserver") == (normal[0], "HIT")


class TrustForwardedHost:
    """What a proxy-trusting deployment does: Host := X-Forwarded-Host (dashes only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        forwarded = dict(scope.get("headers", ())).get(b"x-forwarded-host")
        if scope["type"] == "http" and forwarded:
            headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
            scope = {**scope, "headers": [*headers, (b"host", forwarded)]}
        await self.app(scope, receive, send)


async def test_K3_every_vary_header_is_keyed_case_insensitively(cache: Cache) -> None:
    site = Site(cache)
    site.respond = lambda request: PlainTextResponse(
        f"{request.headers.get('accept-language')} {site.calls}",
        headers={"Vary": "ACCEPT-language"},
    )
    async with client(site.app) as c:
        fr = await c.get("/r", headers={"Accept-Language": "fr"})
        en = await c.get("/r", headers={"accept-language": "en"})
        fr_again = await c.get("/r", headers={"ACCEPT-LANGUAGE": "fr"})
        upper = await c.get("/r", headers={"Accept-Language": "FR"})
    assert (fr.text, en.text) == ("fr 1", "en 2")
    assert (fr_again.text, xc(fr_again)) == ("fr 1", "HIT")
    assert upper.text == "FR 3"  # values are compared as sent


async def test_K4_absent_and_empty_vary_headers_differ(cache: Cache) -> None:
    site = Site(cache)
    site.respond = lambda request: PlainTextResponse(
        f"{request.headers.get('x-tenant')!r} {site.calls}", headers={"Vary": "X-Tenant"}
    )
    async with client(site.app) as c:
        absent = await c.get("/r")
        empty = await c.get("/r", headers={"X-Tenant": ""})
        both = [await c.get("/r"), await c.get("/r", headers={"X-Tenant": ""})]
    assert (absent.text, empty.text) == ("None 1", "'' 2")
    assert [r.text for r in both] == ["None 1", "'' 2"]


@pytest.mark.parametrize("trusting", [False, True])
async def test_K5_underscore_header_is_not_x_forwarded_host(cache: Cache, trusting: bool) -> None:
    site = Site(cache)
    site.respond = lambda request: PlainTextResponse(
        f"{request.url} {request.headers.get('x-forwarded-host')} {site.calls}",
        headers={"Vary": "X-Forwarded-Host"},
    )
    if trusting:
        site.app.add_middleware(TrustForwardedHost)
    sneaky = [(b"host", b"testserver"), (b"x_forwarded_host", b"evil.example")]
    first = await call_asgi(site.app, path="/r", headers=sneaky)
    normal = await call_asgi(site.app, path="/r")
    assert b"evil" not in first.body and b"evil" not in normal.body
    assert normal.body == first.body and normal.header("x-cache") == "HIT"
    dashed = [(b"host", b"testserver"), (b"x-forwarded-host", b"evil.example")]
    assert (await call_asgi(site.app, path="/r", headers=dashed)).header("x-cache") == "MISS"


@pytest.mark.parametrize(
    "path",
    [
        "/account/",
        "/account/x.css",
        "/account;x.css",
        "/account%2Fx.css",
        "/account/..%2Fstatic/x.css",
    ],
)
async def test_K6_cache_deception_paths_of_a_private_view_are_never_stored(
    cache: Cache, path: str
) -> None:
    site = Site(cache)

    def respond(request: Request) -> Response:
        private = "account" in request.scope["raw_path"].decode()
        headers = {"Cache-Control": "private" if private else "public, max-age=60"}
        return PlainTextResponse(f"render {site.calls}", headers=headers)

    site.respond = respond
    await assert_not_stored(site, path)
    await assert_stored(Site(cache), "/static/x.css")  # decided by headers, not extension


async def test_K7_head_is_answered_from_a_stored_get(cache: Cache) -> None:
    site = Site(cache)
    async with client(site.app) as c:
        get = await c.get("/h")
        head = await c.head("/h")
    assert (xc(head), head.content) == ("HIT", b"")
    assert head.headers["content-length"] == get.headers["content-length"] == "8"
    assert head.headers["etag"] == get.headers["etag"]


async def test_K7_a_head_miss_never_stores_an_empty_body(cache: Cache) -> None:
    site = Site(cache)
    async with client(site.app) as c:
        head = await c.head("/h")
        get = await c.get("/h")
        again = await c.get("/h")
    assert (xc(head), head.content) == ("MISS", b"")
    assert (xc(get), get.text, again.text) == ("MISS", "render 2", "render 2")


def gzip_app(cache: Cache) -> FastAPI:
    app = FastAPI()
    app.add_middleware(GZipMiddleware, minimum_size=10)  # inside the cache: compressed first
    kit = CacheKit(app, cache)

    @app.get("/text")
    @kit.cache(ttl=60)
    async def text(request: Request) -> Response:
        lang = request.headers.get("accept-language", "en")
        return PlainTextResponse(f"{lang} " * 200, headers={"Vary": "Accept-Language"})

    return app


async def test_K8_encodings_and_languages_get_their_own_entries(cache: Cache) -> None:
    app = gzip_app(cache)
    gz = [(b"host", b"testserver"), (b"accept-encoding", b"gzip")]
    plain = [(b"host", b"testserver"), (b"accept-encoding", b"identity")]
    fr = [(b"host", b"testserver"), (b"accept-encoding", b"identity"), (b"accept-language", b"fr")]
    for _ in range(2):  # miss, then hit: each variant keeps its own bytes
        zipped = await call_asgi(app, path="/text", headers=gz)
        identity = await call_asgi(app, path="/text", headers=plain)
        french = await call_asgi(app, path="/text", headers=fr)
        assert zipped.header("content-encoding") == "gzip"
        assert gzip.decompress(zipped.body) == b"en " * 200
        assert identity.header("content-encoding") is None and identity.body == b"en " * 200
        assert french.body == b"fr " * 200
    assert {s.header("x-cache") for s in (zipped, identity, french)} == {"HIT"}


# ------------------------------------------------------------------------------ validators


async def etag_of(site: Site, path: str = "/r") -> str:
    async with client(site.app) as c:
        return (await c.get(path)).headers["etag"]


@pytest.mark.parametrize("state", ["HIT", "MISS"])
async def test_C1_if_none_match_uses_weak_comparison(cache: Cache, state: str) -> None:
    site = Site(cache)
    site.with_headers(body="constant")
    etag = await etag_of(site)
    path = "/r" if state == "HIT" else "/elsewhere"  # same body: same strong ETag
    async with client(site.app) as c:
        weak = await c.get(path, headers={"If-None-Match": f"W/{etag}"})
        assert (weak.status_code, xc(weak)) == (304, state)
        site.with_headers(("ETag", 'W/"v1"'))
        assert (await c.get("/w", headers={"If-None-Match": '"v1"'})).status_code == 304
        assert (await c.get("/w", headers={"If-None-Match": 'W/"v1"'})).status_code == 304
        assert (await c.get("/w", headers={"If-None-Match": '"v2"'})).status_code == 200


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("inm", ['"nope", {etag}', "  {etag}  ", '"a",{etag} ,"b"', "*"])
async def test_C2_if_none_match_lists_whitespace_and_star(
    cache: Cache, method: str, inm: str
) -> None:
    site = Site(cache)
    etag = await etag_of(site)
    async with client(site.app) as c:
        response = await c.request(method, "/r", headers={"If-None-Match": inm.format(etag=etag)})
    assert response.status_code == 304 and response.content == b""


async def test_C3_if_none_match_overrides_if_modified_since(cache: Cache) -> None:
    site = Site(cache)
    site.with_headers(("Last-Modified", LM))
    async with client(site.app) as c:
        await c.get("/r")
        both = {"If-None-Match": '"other"', "If-Modified-Since": LM}
        assert (await c.get("/r", headers=both)).status_code == 200
        assert (await c.get("/r", headers={"If-Modified-Since": LM})).status_code == 304


@pytest.mark.parametrize(
    ("since", "status"),
    [
        (LM, 304),
        ("Wed, 16 Nov 1994 12:45:26 GMT", 304),
        ("Mon, 14 Nov 1994 12:45:26 GMT", 200),
        ("yesterday", 200),
        (f"{LM}, {LM}", 200),
    ],
)
async def test_C4_if_modified_since(cache: Cache, since: str, status: int) -> None:
    site = Site(cache)
    site.with_headers(("Last-Modified", LM))
    async with client(site.app) as c:
        await c.get("/r")
        assert (await c.get("/r", headers={"If-Modified-Since": since})).status_code == status
        twice = httpx.Headers([("If-Modified-Since", LM), ("If-Modified-Since", LM)])
        assert (await c.get("/r", headers=twice)).status_code == 200  # several members
        assert (await c.post("/r", headers={"If-Modified-Since": LM})).status_code == 200
        site.with_headers()
        assert (await c.get("/none", headers={"If-Modified-Since": LM})).status_code == 200


@pytest.mark.parametrize("status", [404, 302, 500])
async def test_C5_only_2xx_becomes_304(cache: Cache, status: int) -> None:
    site = Site(cache)
    site.with_headers(("ETag", '"x"'), ("Last-Modified", LM), status=status)
    async with client(site.app) as c:
        for conditional in (
            {"If-None-Match": "*"},
            {"If-None-Match": '"x"'},
            {"If-Modified-Since": LM},
        ):
            assert (await c.get("/r", headers=conditional)).status_code == status


@pytest.mark.parametrize(
    "conditional",
    [{"If-Match": '"nope"'}, {"If-Unmodified-Since": "Mon, 14 Nov 1994 12:45:26 GMT"}],
)
async def test_C6_if_match_and_if_unmodified_since_are_left_to_the_app(
    cache: Cache, conditional: dict[str, str]
) -> None:
    site = Site(cache)
    site.with_headers(("Last-Modified", LM))
    async with client(site.app) as c:
        await c.get("/r")
        response = await c.get("/r", headers=conditional)
    # RFC 9111 §4.3.2: origin-only preconditions go to the app (which may answer 412),
    # never evaluated by the cache and never turned into a 304 from storage.
    assert response.status_code == 200 and response.text == "render 2"
    assert xc(response) == "BYPASS"


async def test_C7_304_keeps_the_200s_caching_headers(cache: Cache) -> None:
    site = Site(cache)
    kept = {
        "cache-control": "public, max-age=60",
        "expires": http_date(time.time() + 60),
        "vary": "Accept-Language",
        "date": "Tue, 15 Nov 1994 08:12:31 GMT",
        "content-location": "/r",
    }
    site.with_headers(*kept.items(), body="constant")
    async with client(site.app) as c:
        full = await c.get("/r")
        hit = await c.get("/r", headers={"If-None-Match": full.headers["etag"]})
        miss = await c.get("/other", headers={"If-None-Match": full.headers["etag"]})
    for response, state in ((hit, "HIT"), (miss, "MISS")):
        assert response.status_code == 304 and xc(response) == state
        assert response.headers["etag"] == full.headers["etag"]
        for name, value in kept.items():
            assert response.headers[name] == value
    assert hit.headers["age"] == "0" and "content-type" not in hit.headers


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_C8_304_has_no_body_and_no_content_length_mismatch(cache: Cache, method: str) -> None:
    site = Site(cache)
    site.with_headers(body="constant")
    etag = await etag_of(site)
    inm = [(b"host", b"testserver"), (b"if-none-match", etag.encode())]
    # On a hit, then (GET only: a HEAD renders no body to hash) on a miss once rendered.
    for path in ("/r", "/fresh-path") if method == "GET" else ("/r",):
        sent = await call_asgi(site.app, method=method, path=path, headers=inm)
        assert sent.status == 304
        assert all(m.get("body", b"") == b"" for m in sent.body_messages)
        assert sent.header("content-length") in (None, "0")


async def test_C9_a_304_is_never_stored_as_the_representation(cache: Cache) -> None:
    site = Site(cache)
    site.with_headers(("ETag", '"app"'), status=304)
    async with client(site.app) as c:
        assert (await c.get("/r")).status_code == 304
        site.with_headers(body="full")
        full = await c.get("/r")
        assert (full.status_code, full.text) == (200, "full")
        etag = full.headers["etag"]
        assert (await c.get("/new", headers={"If-None-Match": etag})).status_code == 304
        after = await c.get("/new")  # the generated 304 did not replace the 200
    assert (after.status_code, after.text, xc(after)) == (200, "full", "HIT")
    assert site.calls == 3


async def test_C10_strong_etag_hashes_the_bytes_sent(cache: Cache) -> None:
    site = Site(cache)
    first = await call_asgi(site.app, path="/products/1")
    assert first.header("etag") == strong_etag(first.body)
    await cache.ainvalidate_tags("products:1")
    changed = await call_asgi(site.app, path="/products/1")
    assert changed.body != first.body and changed.header("etag") == strong_etag(changed.body)
    app = gzip_app(cache)
    zipped = await call_asgi(app, path="/text", headers=[(b"accept-encoding", b"gzip")])
    plain = await call_asgi(app, path="/text", headers=[(b"accept-encoding", b"identity")])
    assert zipped.header("etag") == strong_etag(zipped.body) != plain.header("etag")


@pytest.mark.parametrize("etag", ['W/"mine"', '"abc"', '""'])
async def test_C11_etags_are_valid_and_the_apps_own_are_kept(cache: Cache, etag: str) -> None:
    site = Site(cache)
    generated = await etag_of(site, "/generated")
    assert is_valid_etag(generated) and not generated.startswith("W/")
    site.with_headers(("ETag", etag))
    first, second = await twice(site, "/r")
    assert first.headers["etag"] == second.headers["etag"] == etag


# ------------------------------------------------------------------------------ serving


async def test_R1_age_counts_whole_seconds_and_replaces_a_stored_age(
    cache: Cache, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = Site(cache)
    site.with_headers(("Age", "1000"))
    ages = []
    async with client(site.app) as c:
        await c.get("/r")
        for step in (0, 5.5, 10):
            clock.advance(step)
            ages.append((await c.get("/r")).headers["age"])
    assert ages == ["0", "5", "15"]


async def test_R2_the_stored_date_is_served_unchanged(
    cache: Cache, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = Site(cache)
    site.with_headers(("Date", "Tue, 15 Nov 1994 08:12:31 GMT"))
    async with client(site.app) as c:
        await c.get("/r")
        await c.get("/nodate")  # the app sends no Date: the core stamps one when storing
        site.with_headers()
        await c.get("/nodate2")
        dates = []
        for _ in range(2):
            clock.advance(3)
            dates.append((await c.get("/r")).headers["date"])
            dates.append((await c.get("/nodate2")).headers["date"])
    assert dates[0] == dates[2] == "Tue, 15 Nov 1994 08:12:31 GMT"
    assert dates[1] == dates[3]


async def race_stale(site: Site, clock: Clock, path: str, advance: float) -> httpx.Response:
    """Store, let it expire, hold one re-render open and return a concurrent request."""
    async with client(site.app) as c:
        assert xc(await c.get(path)) == "MISS"
        clock.advance(advance)
        site.gate = asyncio.Event()
        gate = site.gate
        renderer = asyncio.create_task(c.get(path))
        await asyncio.wait_for(site.waiting.wait(), 5)
        other = await c.get(path)
        gate.set()
        assert (await renderer).text == ("render 3" if xc(other) == "MISS" else "render 2")
        return other


async def test_R3_stale_only_within_the_views_window(cache: Cache, clock: Clock) -> None:
    site = Site(cache, view={"ttl": 10, "stale_ttl": 30})
    other = await race_stale(site, clock, "/r", 15)
    assert (xc(other), other.text) == ("STALE", "render 1")
    clock.advance(100)  # beyond the window: rendered, never stale
    async with client(site.app) as c:
        late = await c.get("/r")
    assert (xc(late), late.text) == ("MISS", "render 3")


@pytest.mark.parametrize(
    ("line", "state"),
    [
        ("max-age=10, stale-while-revalidate=30", "STALE"),
        ("max-age=10, stale-while-revalidate=30, must-revalidate", "MISS"),
        ("max-age=10, stale-while-revalidate=30, proxy-revalidate", "MISS"),
        ("s-maxage=10, stale-while-revalidate=30", "MISS"),
    ],
)
async def test_R3_stale_only_when_the_response_allows_it(
    cache: Cache, clock: Clock, line: str, state: str
) -> None:
    site = Site(cache, shared_cache=True)
    site.with_headers(("Cache-Control", line))
    other = await race_stale(site, clock, "/u", 15)
    assert xc(other) == state


@pytest.mark.parametrize(
    ("method", "status", "invalidated"),
    [
        ("POST", 201, True),
        ("PUT", 200, True),
        ("PATCH", 302, True),
        ("DELETE", 204, True),
        ("POST", 400, False),
        ("POST", 500, False),
    ],
)
async def test_R4_unsafe_methods_invalidate_the_url(
    cache: Cache, method: str, status: int, invalidated: bool
) -> None:
    site = Site(cache)
    site.unsafe_status = status
    async with client(site.app) as c:
        await c.get("/r?a=1")
        await c.get("/r?a=2")
        await c.get("/r?a=1", headers={"Accept-Language": "fr"})
        await c.request(method, "/r?a=1")
        a1 = await c.get("/r?a=1")
        a2 = await c.get("/r?a=2")
    assert xc(a1) == ("MISS" if invalidated else "HIT")
    assert xc(a2) == "HIT"


async def test_R4_invalidation_reaches_vary_variants(cache: Cache) -> None:
    site = Site(cache)
    site.with_headers(("Vary", "Accept-Language"))
    async with client(site.app) as c:
        for lang in ("fr", "en"):
            await c.get("/r", headers={"Accept-Language": lang})
        await c.delete("/r")
        after = [await c.get("/r", headers={"Accept-Language": lang}) for lang in ("fr", "en")]
    assert [xc(r) for r in after] == ["MISS", "MISS"]


@pytest.mark.parametrize(
    "headers",
    [{"Cache-Control": "no-cache"}, {"Cache-Control": "max-age=0"}, {"Pragma": "no-cache"}],
)
@pytest.mark.parametrize("honour", [False, True])
async def test_R5_request_no_cache_is_ignored_unless_configured(
    cache: Cache, headers: dict[str, str], honour: bool
) -> None:
    site = Site(cache, honour_request_no_cache=honour)
    async with client(site.app) as c:
        await c.get("/r")
        response = await c.get("/r", headers=headers)
    assert xc(response) == ("BYPASS" if honour else "HIT")
    assert site.calls == (2 if honour else 1)


async def test_R5_only_if_cached_answers_504_on_a_miss(cache: Cache) -> None:
    site = Site(cache)
    only = {"Cache-Control": "only-if-cached"}
    async with client(site.app) as c:
        assert (await c.get("/r", headers=only)).status_code == 504
        assert site.calls == 0
        await c.get("/r")
        stored = await c.get("/r", headers=only)
    assert (stored.status_code, stored.text, xc(stored)) == (200, "render 1", "HIT")


@pytest.mark.parametrize("name", ["X-Cache", "X-My-Cache", None])
async def test_R6_x_cache_values_and_configurable_name(cache: Cache, name: str | None) -> None:
    site = Site(cache, header_name=name)
    async with client(site.app) as c:
        responses = [
            await c.get("/r"),
            await c.get("/r"),
            await c.get("/r", headers={"Authorization": "Bearer x"}),
        ]
    states = [r.headers.get(name or "x-cache") for r in responses]
    if name is None:
        assert states == [None, None, None]
        assert all(not k.lower().startswith("x-") for r in responses for k in r.headers)
    else:
        assert states == ["MISS", "HIT", "BYPASS"]
        if name != "X-Cache":
            assert all("x-cache" not in r.headers for r in responses)


@pytest.mark.parametrize("configured", [None, "max-age=600"])
async def test_R7_cdn_cache_control_only_when_configured(
    cache: Cache, configured: str | None
) -> None:
    site = Site(cache, cdn_cache_control=configured)
    first, second = await twice(site, "/r")
    assert first.headers.get("cdn-cache-control") == configured
    assert second.headers.get("cdn-cache-control") == configured
    async with client(site.app) as c:
        mine = await c.get("/me", headers={"Cookie": "session=ada"})
    assert "cdn-cache-control" not in mine.headers  # never on a private response


@pytest.mark.parametrize(
    ("headers", "stored"),
    [
        ((("CDN-Cache-Control", "max-age=60"),), False),
        ((("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "no-store")), True),
    ],
)
async def test_R7_the_apps_cdn_cache_control_is_not_read_as_cache_control(
    cache: Cache, headers: tuple[tuple[str, str], ...], stored: bool
) -> None:
    site = Site(cache, shared_cache=True)
    site.with_headers(*headers)
    await (assert_stored if stored else assert_not_stored)(site, "/u")


@pytest.mark.parametrize("path", ["/products", "/items"])
async def test_R8_tag_invalidation_rerenders(cache: Cache, path: str) -> None:
    site = Site(cache)
    tag = "products:1" if path == "/products" else "items:1"
    async with client(site.app) as c:
        assert (await c.get(f"{path}/1")).text == "render 1"
        assert (await c.get(f"{path}/2")).text == "render 2"
        await cache.ainvalidate_tags(tag)
        one = await c.get(f"{path}/1")
        two = await c.get(f"{path}/2")
    assert (one.text, xc(one)) == ("render 3", "MISS")
    assert (two.text, xc(two)) == ("render 2", "HIT")


async def test_R8_tag_invalidation_reaches_other_processes(redis_url: str) -> None:
    ours, theirs = (
        Cache.from_url(redis_url, secret_key="test-secret"),
        Cache.from_url(redis_url, secret_key="test-secret"),
    )
    try:
        site = Site(ours)
        async with client(site.app) as c:
            await c.get("/products/1")
            assert xc(await c.get("/products/1")) == "HIT"  # now in our L1 as well
            await theirs.ainvalidate_tags("products")
            deadline = time.monotonic() + 2
            while xc(response := await c.get("/products/1")) == "HIT":
                assert time.monotonic() < deadline, "the invalidation never arrived"
                await asyncio.sleep(0.02)
        assert response.text == "render 2"
    finally:
        await ours.aclose()
        await theirs.aclose()


# ------------------------------------------------------------------------------ R11 debug


async def test_R11_debug_headers_say_why_through_cachekit(cache: Cache) -> None:
    site = Site(cache, debug_headers=True)
    async with client(site.app) as c:
        first, second = await c.get("/r"), await c.get("/r")
        assert (xc(first), first.headers.get("x-cache-reason")) == ("MISS", "cold")
        assert (xc(second), second.headers.get("x-cache-reason")) == ("HIT", "fresh")
        bypass = await c.get("/r", headers={"Authorization": "Bearer x"})
        assert (xc(bypass), bypass.headers.get("x-cache-reason")) == ("BYPASS", "authorization")
        site.with_headers(("Set-Cookie", "a=1"))
        cookie = await c.get("/products/1")
        assert (xc(cookie), cookie.headers.get("x-cache-reason")) == ("MISS", "sets-cookie")


async def test_R11_no_reason_header_by_default(cache: Cache) -> None:
    site = Site(cache)
    async with client(site.app) as c:
        for response in (await c.get("/r"), await c.get("/r")):
            assert "x-cache-reason" not in response.headers


async def test_S19_surrogate_control_never_leaves_through_cachekit(cache: Cache) -> None:
    site = Site(cache, {"ttl": None})
    site.with_headers(("Cache-Control", "no-cache"), ("Surrogate-Control", "max-age=60"))
    async with client(site.app) as c:
        first, second = await c.get("/r"), await c.get("/r")
    assert (xc(first), xc(second)) == ("MISS", "HIT")
    assert (first.text, second.text) == ("render 1", "render 1")
    assert "surrogate-control" not in first.headers and "surrogate-control" not in second.headers
