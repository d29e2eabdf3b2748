"""``CacheMiddleware`` and ``CacheKit`` as a FastAPI user meets them (memory and Redis caches):
hits never skip a dependency (the route's dependencies run, its endpoint does not), entries
are shared through Redis, per-user and shared-cache modes, stale-while-revalidate and
stale-if-error, lifespan and non-http scopes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from cachekit_core import Cache, ConfigurationError
from cachekit_core.httpcache import HttpCache
from cachekit_fastapi import CacheKit, CacheMiddleware
from cachekit_fastapi.middleware import PendingLookup
from cachekit_fastapi.routing import cache_endpoint

from ._asgi import Clock, call_asgi, client, make_cache


class Counting:
    """An ASGI middleware inside the cache: counts the requests that reached the app."""

    def __init__(self, app: ASGIApp, counts: dict[str, int]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.counts["app"] += 1
        await self.app(scope, receive, send)


def header_user(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-user":
            user: str = value.decode("latin-1")
            return user
    return None


class Shop:
    """A FastAPI app with one router-level dependency (run only when routing happens)."""

    def __init__(self, cache: Cache, **options: Any) -> None:
        self.counts = {"app": 0, "router": 0, "endpoint": 0}
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.app = app = FastAPI()
        app.add_middleware(Counting, counts=self.counts)  # added first: inside the cache
        self.kit = kit = CacheKit(app, cache, user=header_user, **options)

        def routed() -> None:
            self.counts["router"] += 1

        router = APIRouter(dependencies=[Depends(routed)])

        @router.get("/products/{pid}")
        @kit.cache(ttl=10, stale_ttl=30, tags=lambda pid: [f"products:{pid}"])
        async def product(pid: int) -> dict[str, Any]:
            if self.gate is not None:  # hold this render open (one request only)
                gate, self.gate = self.gate, None
                self.entered.set()
                await gate.wait()
            return self.render(pid=pid)

        @router.get("/sync/{pid}")
        @kit.cache(ttl=10, stale_ttl=30, tags=["products:{pid}"])
        def product_sync(pid: int) -> dict[str, Any]:
            return self.render(pid=pid, thread=threading.current_thread().name)

        @router.get("/me")
        @kit.cache(ttl=60, per_user=True)
        async def me(request: Request) -> dict[str, Any]:
            return self.render(user=request.headers.get("x-user"))

        @router.get("/me-sync")
        @kit.cache(ttl=60, per_user=True)
        def me_sync(request: Request) -> dict[str, Any]:
            return self.render(user=request.headers.get("x-user"))

        @app.get("/plain")  # no dependency: a shared cache may answer it before routing
        async def plain() -> Response:
            self.render()
            return PlainTextResponse("plain", headers=self.headers)

        app.include_router(router)
        self.headers = {"Cache-Control": "public, max-age=60"}

    def render(self, **values: Any) -> dict[str, Any]:
        self.counts["endpoint"] += 1
        if self.fail:
            raise RuntimeError("the database is down")
        return {"n": self.counts["endpoint"], **values}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[Cache]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    built = make_cache(request.param, url, clock)
    yield built
    await built.aclose()


def xc(response: httpx.Response) -> str | None:
    state: str | None = response.headers.get("x-cache")
    return state


@pytest.mark.parametrize("path", ["/products/1", "/sync/1"])
async def test_a_hit_runs_the_routes_dependencies_not_its_endpoint(cache: Cache, path: str) -> None:
    # Was "served without entering the router": a hit skipped the router's dependency.
    shop = Shop(cache)
    async with client(shop.app) as c:
        first = await c.get(path)
        hits = [await c.get(path) for _ in range(3)]
    assert xc(first) == "MISS" and [xc(r) for r in hits] == ["HIT"] * 3
    assert all(r.json() == first.json() for r in hits)
    assert shop.counts == {"app": 4, "router": 4, "endpoint": 1}


async def test_a_redis_hit_is_shared_by_two_app_instances(redis_url: str) -> None:
    caches = [
        Cache.from_url(redis_url, namespace="shop", secret_key="test-secret") for _ in range(2)
    ]
    try:
        one, two = Shop(caches[0]), Shop(caches[1])
        async with client(one.app) as c1, client(two.app) as c2:
            first = await c1.get("/products/7")
            second = await c2.get("/products/7")
        assert (xc(first), xc(second)) == ("MISS", "HIT")
        assert second.json() == first.json() == {"n": 1, "pid": 7}
        assert two.counts == {"app": 1, "router": 1, "endpoint": 0}  # its dependency ran
    finally:
        for built in caches:
            await built.aclose()


@pytest.mark.parametrize("path", ["/me", "/me-sync"])
async def test_per_user_entries(cache: Cache, path: str) -> None:
    shop = Shop(cache, session_cookie="sid")
    ada, bob = {"X-User": "ada", "Cookie": "sid=1"}, {"X-User": "bob", "Cookie": "sid=2"}
    async with client(shop.app) as c:
        responses = [await c.get(path, headers=h) for h in (ada, bob, ada, bob)]
        anonymous = [await c.get(path) for _ in range(2)]
    assert [r.json()["user"] for r in responses] == ["ada", "bob", "ada", "bob"]
    assert [xc(r) for r in responses] == ["MISS", "MISS", "HIT", "HIT"]
    assert responses[2].json() == responses[0].json()
    assert all("private" in r.headers["cache-control"] for r in responses)
    assert [xc(r) for r in anonymous] == ["BYPASS", "BYPASS"]  # no user: never stored
    assert shop.counts["router"] == 6  # per-user hits are found after routing
    assert shop.counts["endpoint"] == 4


@pytest.mark.parametrize("shared", [False, True])
async def test_shared_cache_mode_stores_undecorated_routes(cache: Cache, shared: bool) -> None:
    shop = Shop(cache, shared_cache=shared)
    async with client(shop.app) as c:
        first = await c.get("/plain")
        second = await c.get("/plain")
        etag = first.headers.get("etag", '"none"')
        conditional = await c.get("/plain", headers={"If-None-Match": etag})
        shop.headers = {}  # no explicit freshness: a shared cache does not store it
        await c.get("/plain?fresh=no")
        unfresh = await c.get("/plain?fresh=no")
    if not shared:  # an undecorated route passes untouched: no X-Cache, no ETag, no 304
        assert [xc(r) for r in (first, second, unfresh)] == [None] * 3
        assert "etag" not in first.headers and conditional.status_code == 200
        assert shop.counts["endpoint"] == 5
        return
    assert (xc(first), xc(second)) == ("MISS", "HIT")
    assert conditional.status_code == 304  # validators on every response, stored or not
    assert xc(unfresh) == "MISS"
    assert shop.counts["endpoint"] == 3


async def test_stale_while_revalidate_serves_stale_while_one_request_renders(
    cache: Cache, clock: Clock
) -> None:
    shop = Shop(cache)
    async with client(shop.app) as c:
        await c.get("/products/1")
        clock.advance(15)  # past ttl=10, within stale_ttl=30
        shop.gate = gate = asyncio.Event()
        renderer = asyncio.create_task(c.get("/products/1"))
        await asyncio.wait_for(shop.entered.wait(), 5)
        stale = [await c.get("/products/1") for _ in range(2)]
        gate.set()
        rendered = await renderer
        fresh = await c.get("/products/1")
    assert [(xc(r), r.json()["n"]) for r in stale] == [("STALE", 1), ("STALE", 1)]
    assert all("age" in r.headers for r in stale)
    assert (xc(rendered), rendered.json()["n"]) == ("MISS", 2)
    assert (xc(fresh), fresh.json()["n"]) == ("HIT", 2)
    assert shop.counts["endpoint"] == 2


@pytest.mark.parametrize("path", ["/products/1", "/sync/1"])
async def test_stale_if_error_when_the_endpoint_raises(
    cache: Cache, clock: Clock, path: str
) -> None:
    shop = Shop(cache)
    async with client(shop.app) as c:
        first = await c.get(path)
        clock.advance(15)
        shop.fail = True
        served = await c.get(path)
        shop.fail = False
        after = await c.get(path)  # the failed render released its claim: render again
    assert (served.status_code, xc(served)) == (200, "STALE")
    assert served.json() == first.json()
    assert (xc(after), after.json()["n"]) == ("MISS", 3)


async def test_an_error_without_a_stale_copy_propagates(cache: Cache) -> None:
    shop = Shop(cache)
    shop.fail = True
    transport = httpx.ASGITransport(app=shop.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        response = await c.get("/products/1")
    assert response.status_code == 500  # Starlette's error handler answered, not the cache
    with pytest.raises(RuntimeError, match="database is down"):
        async with client(shop.app) as c:
            await c.get("/products/1")


async def test_a_streamed_rerender_releases_its_claim(cache: Cache, clock: Clock) -> None:
    app = FastAPI()
    kit = CacheKit(app, cache)
    streaming = [False]
    renders = [0]

    @app.get("/feed")
    @kit.cache(ttl=10, stale_ttl=30)
    async def feed() -> Response:
        renders[0] += 1
        if streaming[0]:
            return StreamingResponse(iter([b"a", b"b"]))
        return PlainTextResponse("whole")

    async with client(app) as c:
        await c.get("/feed")
        clock.advance(15)
        streaming[0] = True
        streamed = await c.get("/feed")  # claims the re-render, streams: nothing stored
        again = await c.get("/feed")  # so the next request may claim it again
    assert (streamed.text, xc(streamed)) == ("ab", None)
    assert again.text == "ab" and renders[0] == 3


async def test_unsafe_streamed_responses_invalidate_too(cache: Cache) -> None:
    app = FastAPI()
    kit = CacheKit(app, cache)

    @app.get("/doc")
    @kit.cache(ttl=60)
    async def doc() -> Response:
        return PlainTextResponse("doc")

    @app.put("/doc")
    async def put() -> Response:
        return StreamingResponse(iter([b"saved"]), status_code=201)

    async with client(app) as c:
        await c.get("/doc")
        assert xc(await c.get("/doc")) == "HIT"
        assert (await c.put("/doc")).text == "saved"
        assert xc(await c.get("/doc")) == "MISS"


async def test_the_lookup_is_visible_in_the_scope(cache: Cache) -> None:
    app = FastAPI()
    kit = CacheKit(app, cache)
    seen: list[Any] = []

    @app.get("/scope")
    @kit.cache(ttl=60)
    async def scope(request: Request) -> Response:
        seen.append(request.scope["cachekit"])
        return PlainTextResponse("x")

    async with client(app) as c:
        await c.get("/scope")
    assert isinstance(seen[0], PendingLookup) and seen[0].http is kit.http
    assert isinstance(kit.http, HttpCache) and kit.http.cache is cache


async def test_a_decorated_endpoint_without_the_middleware_just_runs() -> None:
    app = FastAPI()

    @app.get("/p/{pid}")
    @cache_endpoint(ttl=60, tags=["p:{pid}"])
    async def p(pid: int) -> dict[str, int]:
        return {"pid": pid}

    async with client(app) as c:
        response = await c.get("/p/3")
    assert response.json() == {"pid": 3} and "x-cache" not in response.headers


def test_tag_templates_are_checked_when_decorating() -> None:
    async def p(pid: int) -> None: ...

    # The rules and errors of every decorator's tags= (cachekit_core.templates).
    with pytest.raises(ConfigurationError, match="names 'pk', which is not a parameter"):
        cache_endpoint(tags=["p:{pk}"])(p)
    with pytest.raises(ConfigurationError, match=r"has the field \{\}"):
        cache_endpoint(tags=["p:{}"])(p)
    with pytest.raises(ConfigurationError, match="not one string"):
        cache_endpoint(tags="p:{pid}")(p)


async def test_tag_callables_receive_only_what_they_declare(cache: Cache) -> None:
    app = FastAPI()
    kit = CacheKit(app, cache)
    got: list[dict[str, Any]] = []

    def tags(pid: int, **rest: Any) -> list[str]:
        got.append({"pid": pid, **rest})
        return [f"p:{pid}"]

    @app.get("/p/{pid}")
    @kit.cache(ttl=60, tags=tags)
    async def p(pid: int, q: str = "x") -> dict[str, Any]:
        return {"pid": pid, "q": q}

    @app.get("/only/{pid}")
    @kit.cache(ttl=60, tags=lambda pid: [f"p:{pid}"])
    async def only(pid: int, q: str = "x") -> dict[str, Any]:
        return {"pid": pid, "q": q}

    async with client(app) as c:
        await c.get("/p/1?q=y")
        await c.get("/only/1")
        await cache.ainvalidate_tags("p:1")
        assert xc(await c.get("/only/1")) == "MISS"
    assert got == [{"pid": 1, "q": "y"}]


async def test_works_on_any_asgi_app(cache: Cache) -> None:
    calls = [0]

    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        calls[0] += 1
        headers = [(b"content-type", b"text/plain"), (b"cache-control", b"max-age=60")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"raw"})

    app = CacheMiddleware(raw, cache=cache, shared_cache=True)
    first = await call_asgi(app, path="/x")
    second = await call_asgi(app, path="/x")
    assert (first.header("x-cache"), second.header("x-cache")) == ("MISS", "HIT")
    assert second.body == b"raw" and calls == [1] and second.header("etag")
    with pytest.raises(TypeError, match="cache="):
        CacheMiddleware(raw)


@pytest.mark.parametrize("inside", [False, True])
async def test_http_middleware_functions_around_or_inside_the_cache(
    cache: Cache, inside: bool
) -> None:
    app = FastAPI()
    seen: list[str] = []

    async def stamp(request: Request, call_next: Any) -> Response:
        seen.append(request.url.path)
        response: Response = await call_next(request)
        response.headers["X-Stamped"] = "yes"
        return response

    if inside:  # BaseHTTPMiddleware re-streams the body: passed through, never stored
        app.middleware("http")(stamp)
    kit = CacheKit(app, cache)
    if not inside:
        app.middleware("http")(stamp)

    @app.get("/p/{pid}")
    @kit.cache(ttl=60, tags=["p:{pid}"])
    async def p(pid: int) -> dict[str, int]:
        return {"pid": pid}

    async with client(app) as c:
        responses = [await c.get("/p/1") for _ in range(2)]
    assert all(r.json() == {"pid": 1} and r.headers["x-stamped"] == "yes" for r in responses)
    assert [xc(r) for r in responses] == ([None, None] if inside else ["MISS", "HIT"])
    assert len(seen) == 2


class SpyCache(Cache):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    async def aclose(self) -> None:
        self.log.append("cache closed")
        await super().aclose()


@pytest.mark.parametrize("own_lifespan", [False, True])
def test_lifespan_closes_the_cache_after_the_apps_own(own_lifespan: bool) -> None:
    log: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        log.append("startup")
        yield {"greeting": "hi"}
        log.append("shutdown")

    app = FastAPI(lifespan=lifespan) if own_lifespan else FastAPI()
    kit = CacheKit(app, SpyCache(log))

    @app.get("/hello")
    @kit.cache(ttl=60)
    async def hello(request: Request) -> dict[str, str]:
        return {"greeting": getattr(request.state, "greeting", "none")}

    with TestClient(app) as tc:
        assert tc.get("/hello").json() == {"greeting": "hi" if own_lifespan else "none"}
        assert tc.get("/hello").headers["x-cache"] == "HIT"
        assert "cache closed" not in log
    expected = ["startup", "shutdown", "cache closed"] if own_lifespan else ["cache closed"]
    assert log == expected


def test_websockets_pass_through() -> None:
    app = FastAPI()
    CacheKit(app, Cache())

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    with TestClient(app) as tc, tc.websocket_connect("/ws") as socket:
        socket.send_text("ping")
        assert socket.receive_text() == "ping"


@pytest.mark.parametrize("path", ["/search", "/search-sync"])
async def test_query_params_allow_list_caps_the_variants_of_a_path(cache: Cache, path: str) -> None:
    """Issue 11 (9): parameters outside ``query_params`` are ignored for caching, so junk
    query strings share one page instead of making one entry each."""
    app = FastAPI()
    kit = CacheKit(app, cache)
    renders: list[str] = []

    @app.get("/search")
    @kit.cache(ttl=60, query_params=["q", "page"])
    async def search(q: str = "", page: int = 1) -> dict[str, Any]:
        renders.append(q)
        return {"q": q, "page": page, "n": len(renders)}

    @app.get("/search-sync")
    @kit.cache(ttl=60, query_params=("q", "page"))
    def search_sync(q: str = "", page: int = 1) -> dict[str, Any]:
        renders.append(q)
        return {"q": q, "page": page, "n": len(renders)}

    with pytest.raises(TypeError, match="list of parameter names"):
        kit.cache(query_params="q")
    async with client(app) as c:
        first = await c.get(f"{path}?q=shoes&utm_source=mail")
        junk = [await c.get(f"{path}?utm_x={i}&q=shoes&r={i * 7}") for i in range(20)]
        other = await c.get(f"{path}?q=shoes&page=2&fbclid=x")
        again = await c.get(f"{path}?page=2&q=shoes")
    assert xc(first) == "MISS" and {xc(r) for r in junk} == {"HIT"}
    assert all(r.json() == first.json() == {"q": "shoes", "page": 1, "n": 1} for r in junk)
    assert (xc(other), xc(again)) == ("MISS", "HIT") and again.json()["page"] == 2
    assert len(renders) == 2
    assert cache.local is not None and len(cache.local) == 2
