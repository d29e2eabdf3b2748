from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cachekit_core import Cache, ConfigurationError, RedisLayer
from cachekit_fastapi import Session, SessionMiddleware
from cachekit_fastapi.sessions import SESSION_ACCESSED
from tests.support.redis_server import RedisServer

SECRET = "test-secret"
CACHE_SECRET = "cache-secret"
COOKIE = re.compile(r"^session=([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{43}); path=/; ")


class ScopeProbe:
    """Outermost ASGI layer: records what an HTTP cache in front of the app would see."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.accessed: list[bool] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def probe(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.accessed.append(bool(scope.get(SESSION_ACCESSED)))
            await send(message)

        await self.app(scope, receive, probe)


class Gate:
    """Holds ``/slow`` between loading the session and saving it."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()


def make_app(cache: Cache, **options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/view")
    async def view(request: Request) -> dict[str, Any]:
        return {"session": dict(request.session)}

    @app.post("/update")
    async def update(request: Request) -> dict[str, Any]:
        request.session.update(await request.json())
        return {"session": dict(request.session)}

    @app.post("/append")
    async def append(request: Request) -> dict[str, Any]:
        request.session["cart"].append(await request.json())  # nested: no top-level write
        return {"session": dict(request.session)}

    @app.post("/clear")
    async def clear(request: Request) -> dict[str, Any]:
        request.session.clear()
        return {"session": dict(request.session)}

    @app.post("/rotate")
    async def rotate(request: Request) -> dict[str, Any]:
        session = request.session
        assert isinstance(session, Session)
        session.rotate()
        return {"session": dict(session)}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, Any]:
        request.session.pop("user", None)  # a no-op on a session the store did not deliver
        return {"session": dict(request.session)}

    @app.post("/drop")
    async def drop(request: Request) -> dict[str, Any]:
        for key in await request.json():
            request.session.pop(key, None)
        return {"session": dict(request.session)}

    @app.post("/relogin")
    async def relogin(request: Request) -> dict[str, Any]:
        request.session.clear()
        request.session.update(await request.json())
        return {"session": dict(request.session)}

    @app.post("/promote")
    async def promote(request: Request) -> dict[str, Any]:
        request.session["auth"]["level"] = "admin"  # nested: no top-level write
        return {"session": dict(request.session)}

    @app.post("/slow")
    async def slow(request: Request) -> dict[str, Any]:
        """Load the session, wait for the test's go, then apply the body's changes."""
        gate: Gate = app.state.gate
        session = request.session
        dict(session)  # loaded
        gate.entered.set()
        await gate.release.wait()
        changes = await request.json()
        if "cart" in changes:
            session["cart"].append(changes.pop("cart"))
        session.update(changes)
        return {"session": dict(session)}

    @app.get("/untouched")
    async def untouched() -> dict[str, str]:
        return {"status": "ok"}

    app.state.gate = Gate()

    app.add_middleware(SessionMiddleware, cache=cache, secret_key=SECRET, **options)
    return app


def client(
    app: ASGIApp, base_url: str = "http://testserver", *, raise_app_exceptions: bool = True
) -> httpx.AsyncClient:
    """``raise_app_exceptions=False``: an exception the app raises is the 500 a client sees."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url=base_url)


def from_url(url: str, **options: Any) -> Cache:
    """A Redis-backed cache signed with its own secret (which the sessions never rely on)."""
    if not options.get("allow_unsigned"):
        options.setdefault("secret_key", CACHE_SECRET)
    return Cache.from_url(url, **options)


def session_id(response: httpx.Response) -> str:
    match = COOKIE.match(response.headers["set-cookie"])
    assert match is not None, response.headers["set-cookie"]
    return match[1]


@pytest.fixture
async def memory_cache() -> AsyncIterator[Cache]:
    cache = Cache()
    yield cache
    await cache.aclose()


async def test_the_cookie_holds_a_signed_id_and_no_session_data(memory_cache: Cache) -> None:
    async with client(make_app(memory_cache)) as c:
        response = await c.post("/update", json={"card": "4111-secret"})
    set_cookie = response.headers["set-cookie"]
    sid = session_id(response)
    assert "4111" not in set_cookie
    assert base64.b64encode(b"4111").decode()[:4] not in set_cookie
    assert "Max-Age=1209600; httponly; samesite=lax" in set_cookie
    stored = (await memory_cache.records.aread(f"session:{sid}")).value
    assert stored.startswith("cks1.") and stored.endswith('.{"card":"4111-secret"}')  # signed


async def test_data_survives_requests_and_reads_send_no_cookie(memory_cache: Cache) -> None:
    async with client(make_app(memory_cache)) as c:
        first = await c.post("/update", json={"user": "ada"})
        assert "set-cookie" in first.headers
        response = await c.get("/view")
        assert response.json() == {"session": {"user": "ada"}}
        assert "set-cookie" not in response.headers
        assert "cookie" in response.headers["vary"].lower()
        response = await c.post("/update", json={"theme": "dark"})
        assert session_id(response) == session_id(first)  # an existing session keeps its id
        response = await c.get("/view")
        assert response.json() == {"session": {"user": "ada", "theme": "dark"}}


async def test_nested_changes_are_saved(memory_cache: Cache) -> None:
    async with client(make_app(memory_cache)) as c:
        await c.post("/update", json={"cart": []})
        await c.post("/append", json="apple")
        await c.post("/append", json="pear")
        response = await c.get("/view")
    assert response.json() == {"session": {"cart": ["apple", "pear"]}}


async def test_clearing_deletes_the_cookie_and_the_stored_data(memory_cache: Cache) -> None:
    async with client(make_app(memory_cache)) as c:
        sid = session_id(await c.post("/update", json={"a": 1}))
        response = await c.post("/clear")
        assert response.headers["set-cookie"].startswith(
            "session=null; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly"
        )
        assert not (await memory_cache.records.aread(f"session:{sid}")).found
        assert "session" not in c.cookies
        assert (await c.get("/view")).json() == {"session": {}}


@pytest.mark.parametrize(
    "cookie",
    [
        "invalid",
        "A" * 43 + "." + "B" * 43,  # well-formed, wrong signature
        "../../etc/passwd." + "B" * 43,
        "A" * 43 + "." + "é" * 43,  # non-ASCII (a latin-1 header byte)
    ],
)
async def test_a_forged_cookie_gives_an_empty_session(memory_cache: Cache, cookie: str) -> None:
    await memory_cache.records.awrite({"session:" + "A" * 43: '{"user":"victim"}'})
    app = make_app(memory_cache)
    async with client(app) as c:
        response = await c.get("/view", headers={b"cookie": f"session={cookie}".encode("latin-1")})
    assert response.status_code == 200
    assert response.json() == {"session": {}}
    assert "set-cookie" not in response.headers


async def test_a_cookie_signed_with_another_key_is_rejected(memory_cache: Cache) -> None:
    async with client(make_app(memory_cache)) as c:
        response = await c.post("/update", json={"user": "ada"})
    app = FastAPI()
    app.add_middleware(SessionMiddleware, cache=memory_cache, secret_key="another-secret")

    @app.get("/view")
    async def view(request: Request) -> dict[str, Any]:
        return dict(request.session)

    async with client(app) as c:
        c.cookies.set("session", response.cookies["session"])
        assert (await c.get("/view")).json() == {}


async def test_an_expired_session_id_is_never_reused(memory_cache: Cache) -> None:
    async with client(make_app(memory_cache)) as c:
        old = session_id(await c.post("/update", json={"a": 1}))
        await memory_cache.records.ainvalidate([f"session:{old}"])  # the stored data expired
        assert (await c.get("/view")).json() == {"session": {}}
        new = session_id(await c.post("/update", json={"b": 2}))
    assert new != old


async def test_rotate_moves_the_session_to_a_new_id(memory_cache: Cache) -> None:
    async with client(make_app(memory_cache)) as c:
        first = await c.post("/update", json={"user": "ada"})
        old_cookie = first.cookies["session"]
        new = session_id(await c.post("/rotate"))
        assert new != session_id(first)
        assert (await c.get("/view")).json() == {"session": {"user": "ada"}}
    async with client(make_app(memory_cache)) as c:
        c.cookies.set("session", old_cookie)
        assert (await c.get("/view")).json() == {"session": {}}


async def test_access_is_recorded_in_the_scope_for_the_http_cache(memory_cache: Cache) -> None:
    probe = ScopeProbe(make_app(memory_cache))
    async with client(probe) as c:
        untouched = await c.get("/untouched")
        await c.get("/view")
    assert probe.accessed == [False, True]
    assert "cookie" not in untouched.headers.get("vary", "").lower()
    assert "set-cookie" not in untouched.headers


def test_a_read_through_the_session_mapping_marks_it_accessed() -> None:
    scope: dict[str, Any] = {}
    session = Session({"a": 1})
    session.bind_scope(scope)
    assert not session.accessed
    session.pop("missing", None)
    assert not session.accessed  # as Starlette: a no-op pop is not a use
    assert "a" in session
    assert session.accessed and not session.modified
    assert scope[SESSION_ACCESSED] is True


async def test_cookie_attributes_follow_the_options(memory_cache: Cache) -> None:
    app = make_app(
        memory_cache,
        session_cookie="sid",
        max_age=None,
        path="/",
        same_site="strict",
        https_only=True,
        domain="example.com",
        partitioned=True,
    )
    async with client(app, base_url="https://example.com") as c:
        response = await c.post("/update", json={"a": 1})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("sid=")
    assert "Max-Age" not in cookie
    assert cookie.endswith("httponly; samesite=strict; secure; domain=example.com; partitioned")


async def test_starlette_positional_arguments_and_an_empty_secret(memory_cache: Cache) -> None:
    SessionMiddleware(FastAPI(), SECRET, "session", 60, cache=memory_cache)
    with pytest.raises(ConfigurationError):
        SessionMiddleware(FastAPI(), "", cache=memory_cache)


async def test_a_redis_backed_session_is_shared_by_two_app_instances(redis_url: str) -> None:
    cache_a, cache_b = (
        Cache.from_url(redis_url, secret_key="test-secret"),
        Cache.from_url(redis_url, secret_key="test-secret"),
    )
    try:
        async with client(make_app(cache_a)) as a, client(make_app(cache_b)) as b:
            response = await a.post("/update", json={"user": "ada"})
            b.cookies.set("session", response.cookies["session"])
            assert (await b.get("/view")).json() == {"session": {"user": "ada"}}
            await b.post("/update", json={"cart": [1]})
            await a.get("/view")
            # A logout on one instance reaches the other's in-process copy (broadcast).
            await b.post("/clear")
            for _ in range(100):
                if (await a.get("/view")).json() == {"session": {}}:
                    break
                await asyncio.sleep(0.02)
            assert (await a.get("/view")).json() == {"session": {}}
    finally:
        await cache_a.aclose()
        await cache_b.aclose()


def _redis_cache(server: RedisServer, **options: Any) -> Cache:
    # No L1: every read goes to Redis, as in a process that has not seen the session yet.
    options = {"socket_timeout": 0.2, "breaker_cooldown": 0.2, **options}
    return from_url(server.url, l1=False, **options)


@pytest.mark.parametrize("raise_on_error", [False, True])
async def test_redis_down_is_no_500_and_keeps_the_cookie(
    private_redis: RedisServer, raise_on_error: bool
) -> None:
    # Reads and ordinary changes. (A logout or a login fails loudly instead: see
    # test_session_security.py.)
    cache = _redis_cache(private_redis, raise_on_error=raise_on_error)
    try:
        async with client(make_app(cache)) as c:
            await c.post("/update", json={"user": "ada"})
            cookie = c.cookies["session"]
            private_redis.stop()
            for path in ("/view", "/update"):
                method = c.get if path == "/view" else c.post
                kwargs: dict[str, Any] = {} if path != "/update" else {"json": {"x": 1}}
                response = await method(path, **kwargs)
                assert response.status_code == 200
                assert "set-cookie" not in response.headers  # neither deleted nor replaced
                assert c.cookies["session"] == cookie
            assert (await c.get("/view")).json() == {"session": {}}
    finally:
        await cache.aclose()


async def test_a_transient_outage_does_not_destroy_the_session(private_redis: RedisServer) -> None:
    cache = _redis_cache(private_redis)
    try:
        async with client(make_app(cache)) as c:
            await c.post("/update", json={"user": "ada"})
            private_redis.freeze()
            try:
                # Cannot even read it: must not overwrite it with what this request saw.
                response = await c.post("/update", json={"cart": [1]})
                assert response.status_code == 200
                assert "set-cookie" not in response.headers
            finally:
                private_redis.thaw()
            for _ in range(100):
                body = (await c.get("/view")).json()
                if body["session"]:
                    break
                await asyncio.sleep(0.05)
            assert body == {"session": {"user": "ada"}}
    finally:
        await cache.aclose()


async def test_a_session_read_during_an_outage_is_read_only_and_kept(
    private_redis: RedisServer,
) -> None:
    # Sessions are records: never in L1, so during a freeze the read is UNAVAILABLE and the
    # request sees an empty session that nothing may write back; the stored one is kept.
    cache = Cache.from_url(
        private_redis.url, socket_timeout=0.2, breaker_cooldown=0.2, secret_key="test-secret"
    )
    try:
        async with client(make_app(cache)) as c:
            await c.post("/update", json={"user": "ada"})
            private_redis.freeze()
            try:
                shown = await c.get("/view")
                changed = await c.post("/update", json={"theme": "dark"})
            finally:
                private_redis.thaw()
            assert shown.json() == {"session": {}}
            assert changed.status_code == 200 and "set-cookie" not in changed.headers
            for _ in range(100):  # a request after the cooldown probes Redis: it is back
                await asyncio.sleep(0.05)
                await c.get("/view")
                if cache.reachable():
                    break
            assert (await c.get("/view")).json() == {"session": {"user": "ada"}}
    finally:
        await cache.aclose()


async def _fail_on_the_same_cache(cache: Cache) -> None:
    """Another request of this cache fails: its key holds a Redis list (WRONGTYPE)."""
    before = cache.stats()["errors"]
    await cache.aread("broken")
    assert cache.stats()["errors"] == before + 1  # a real failure, counted


async def _fail_on_a_cache_sharing_the_breaker(cache: Cache) -> None:
    """Another cache sharing this one's breaker cannot reach its Redis (nothing listens)."""
    assert isinstance(cache.shared, RedisLayer)
    down = Cache.from_url(
        "redis://127.0.0.1:1/0",
        l1=False,
        socket_timeout=0.2,
        breaker=cache.shared.breaker,
        secret_key="test-secret",
    )
    try:
        assert not await down.aset("x", 1)
    finally:
        await down.aclose()


@pytest.mark.parametrize("fail", [_fail_on_the_same_cache, _fail_on_a_cache_sharing_the_breaker])
async def test_a_failure_elsewhere_during_the_read_is_not_the_sessions(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, fail: Any
) -> None:
    # The session's own read answers: only its status counts, not the cache's error counters.
    cache = Cache.from_url(redis_url, l1=False, socket_timeout=0.2, secret_key="test-secret")
    layer = cache.shared
    assert isinstance(layer, RedisLayer)
    broken = cache.keyspace.entry("broken")
    layer.client().rpush(broken, "not an entry")
    read_one = layer.aread_one
    failures: list[str] = []

    async def read_with_a_failure_meanwhile(key: str, tag_keys: tuple[str, ...]) -> Any:
        if key == broken or failures:
            return await read_one(key, tag_keys)
        failures.append(key)
        await fail(cache)  # lands while the session's read is in flight
        return await read_one(key, tag_keys)

    try:
        async with client(make_app(cache)) as c:
            await c.post("/update", json={"user": "ada"})
            monkeypatch.setattr(layer, "aread_one", read_with_a_failure_meanwhile)
            changed = await c.post("/update", json={"cart": [1]})
            assert failures  # the failure did happen during this request's read
            assert "set-cookie" in changed.headers  # saved: the session was not read-only
            monkeypatch.undo()
            assert (await c.get("/view")).json() == {"session": {"user": "ada", "cart": [1]}}
    finally:
        await cache.aclose()
