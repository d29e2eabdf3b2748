"""Security of the FastAPI sessions (issue 11, items 3 to 6): fixation, resurrection by a late
save, logout during an outage, and session data signed whatever the cache's own settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cachekit_core import Cache, CacheUnavailable, ConfigurationError, RedisLayer
from cachekit_fastapi import SessionMiddleware
from tests.fastapi_tests._asgi import Clock
from tests.fastapi_tests.test_sessions import (
    Gate,
    client,
    from_url,
    make_app,
    session_id,
)
from tests.support.redis_server import RedisServer

PREFIX = "session:"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    memory = request.param == "memory"
    cache = Cache() if memory else from_url(request.getfixturevalue("redis_url"))
    yield cache
    await cache.aclose()


async def stored(cache: Cache, sid: str) -> Any:
    """What the store holds for ``sid`` (sessions are records: past any process's copy)."""
    return (await cache.records.aread(PREFIX + sid)).value


def stored_ids(cache: Cache) -> set[str]:
    """Every session the store holds: their Redis keys (digests of the session ids), or with a
    memory-only cache the session keys themselves."""
    if isinstance(cache.shared, RedisLayer):
        keys = cache.shared.client().keys(cache.keyspace.record_prefix + "*")
        return {k.decode() if isinstance(k, bytes) else k for k in keys}
    # A memory-only cache keeps records in a store of its own; there is no listing API.
    keys = list(cache._record_store.data)  # type: ignore[union-attr]
    return {k for k in keys if k.startswith(PREFIX)}


def ids(cache: Cache, *sids: str) -> set[str]:
    """What ``stored_ids`` answers when the store holds exactly these sessions."""
    if isinstance(cache.shared, RedisLayer):
        return {cache.keyspace.record(PREFIX + sid) for sid in sids}
    return {PREFIX + sid for sid in sids}


def with_cookie(app: FastAPI, cookie: str, **options: Any) -> httpx.AsyncClient:
    c = client(app, **options)
    c.cookies.set("session", cookie)
    return c


# -- item 3: session fixation -----------------------------------------------------------------
async def test_a_planted_session_id_does_not_survive_a_login(store: Cache) -> None:
    app = make_app(store)
    async with client(app) as attacker:
        planted = (await attacker.post("/update", json={"cart": ["bait"]})).cookies["session"]
        async with with_cookie(app, planted) as victim:
            login = await victim.post("/update", json={"user": "victim"})
            assert login.status_code == 200
            assert session_id(login) != planted.partition(".")[0]
            assert (await victim.get("/view")).json() == {
                "session": {"cart": ["bait"], "user": "victim"}
            }
        # The attacker's copy of the id is worth nothing, at once.
        assert (await attacker.get("/view")).json() == {"session": {}}
        assert (await attacker.post("/update", json={"x": 1})).cookies["session"] != planted
    assert await stored(store, planted.partition(".")[0]) is None
    assert store.stats()["corrupt"] == 0  # the tombstone of a moved id is not a forgery


@pytest.mark.parametrize("key", ["user", "user_id", "username", "auth", "token"])
async def test_each_login_key_moves_the_session_when_set_changed_or_removed(
    store: Cache, key: str
) -> None:
    async with client(make_app(store)) as c:
        session_ids = [session_id(await c.post("/update", json={"cart": [1]}))]  # anonymous
        session_ids.append(session_id(await c.post("/update", json={key: "ada"})))  # logged in
        session_ids.append(session_id(await c.post("/update", json={key: "bob"})))  # another user
        # Set again to the same value, or another key changed: the id stays.
        assert session_id(await c.post("/update", json={key: "bob"})) == session_ids[-1]
        assert session_id(await c.post("/update", json={"cart": [2]})) == session_ids[-1]
        session_ids.append(session_id(await c.post("/drop", json=[key])))  # logged out, cart kept
        assert len(set(session_ids)) == 4
        assert (await c.get("/view")).json() == {"session": {"cart": [2]}}
    for old in session_ids[:-1]:
        assert await stored(store, old) is None
    assert stored_ids(store) == ids(store, session_ids[-1])


async def test_a_cleared_and_refilled_session_moves_to_a_new_id(store: Cache) -> None:
    async with client(make_app(store)) as c:
        old = session_id(await c.post("/update", json={"theme": "dark"}))
        new = session_id(await c.post("/relogin", json={"theme": "light"}))
        assert new != old
        assert stored_ids(store) == ids(store, new)
        assert (await c.get("/view")).json() == {"session": {"theme": "light"}}


async def test_a_nested_change_of_a_login_key_moves_the_session(store: Cache) -> None:
    async with client(make_app(store)) as c:
        old = session_id(await c.post("/update", json={"auth": {"level": "user"}}))
        new = session_id(await c.post("/promote"))
        assert new != old and stored_ids(store) == ids(store, new)


async def test_rotate_on_names_the_login_keys(store: Cache) -> None:
    async with client(make_app(store, rotate_on=("account",))) as c:
        sid = session_id(await c.post("/update", json={"user": "ada"}))
        assert session_id(await c.post("/update", json={"user": "bob"})) == sid
        assert session_id(await c.post("/update", json={"account": 7})) != sid
    for wrong in ("user", ["user", 1]):
        with pytest.raises(ConfigurationError):
            SessionMiddleware(FastAPI(), "secret", cache=store, rotate_on=wrong)  # type: ignore[arg-type]


# -- item 4: a request in flight never brings a session back --------------------------------
async def _in_flight(app: FastAPI, cookie: str, body: dict[str, Any]) -> asyncio.Task[Any]:
    """Start ``/slow`` with ``cookie``; return once it has loaded the session."""
    gate: Gate = app.state.gate

    async def run() -> httpx.Response:
        async with with_cookie(app, cookie) as c:
            return await c.post("/slow", json=body)

    task = asyncio.ensure_future(run())
    await asyncio.wait_for(gate.entered.wait(), 5)
    return task


async def _finish(app: FastAPI, task: asyncio.Task[Any]) -> httpx.Response:
    app.state.gate.release.set()
    response: httpx.Response = await asyncio.wait_for(task, 5)
    assert response.status_code == 200
    return response


async def test_a_request_in_flight_during_a_logout_does_not_bring_the_session_back(
    store: Cache,
) -> None:
    app = make_app(store)
    async with client(app) as c:
        cookie = (await c.post("/update", json={"user": "ada", "cart": []})).cookies["session"]
        sid = cookie.partition(".")[0]
        slow = await _in_flight(app, cookie, {"cart": "apple"})
        logout = await c.post("/clear")
        assert logout.headers["set-cookie"].startswith("session=null;")
        late = await _finish(app, slow)
    assert late.json() == {"session": {"user": "ada", "cart": ["apple"]}}  # what it saw
    assert "set-cookie" not in late.headers  # and nothing that would revive it
    assert await stored(store, sid) is None
    assert stored_ids(store) == set()
    async with with_cookie(app, cookie) as old:
        assert (await old.get("/view")).json() == {"session": {}}


async def test_a_request_in_flight_during_a_rotation_does_not_bring_the_old_id_back(
    store: Cache,
) -> None:
    app = make_app(store)
    async with client(app) as c:
        cookie = (await c.post("/update", json={"cart": []})).cookies["session"]
        old = cookie.partition(".")[0]
        slow = await _in_flight(app, cookie, {"cart": "apple"})
        new = session_id(await c.post("/update", json={"user": "ada"}))  # a login
        late = await _finish(app, slow)
        assert "set-cookie" not in late.headers
        assert (await c.get("/view")).json() == {"session": {"cart": [], "user": "ada"}}
    assert await stored(store, old) is None
    assert stored_ids(store) == ids(store, new)
    async with with_cookie(app, cookie) as planted:
        assert (await planted.get("/view")).json() == {"session": {}}


async def test_a_login_in_flight_during_a_logout_leaves_no_session_behind(store: Cache) -> None:
    # The slow request moves the session to a new id after the logout deleted it: the new id
    # must not carry the logged-out session on.
    app = make_app(store)
    async with client(app) as c:
        cookie = (await c.post("/update", json={"user": "ada", "cart": []})).cookies["session"]
        slow = await _in_flight(app, cookie, {"user": "mallory"})
        await c.post("/clear")
        late = await _finish(app, slow)
    assert "set-cookie" not in late.headers
    assert stored_ids(store) == set()


# -- item 5: a logout during an outage ---------------------------------------------------------
def _outage_cache(server: RedisServer, **options: Any) -> Cache:
    return from_url(server.url, l1=False, socket_timeout=0.2, breaker_cooldown=0.2, **options)


@pytest.mark.parametrize("raise_on_error", [False, True])
@pytest.mark.parametrize("logout", ["/clear", "/logout"])
async def test_a_logout_during_an_outage_fails_loudly_and_the_session_never_comes_back(
    private_redis: RedisServer, raise_on_error: bool, logout: str
) -> None:
    here = _outage_cache(private_redis, raise_on_error=raise_on_error)
    elsewhere = _outage_cache(private_redis)  # another process, which saw nothing
    app, other_app = make_app(here), make_app(elsewhere)
    try:
        async with client(app, raise_app_exceptions=False) as c:
            cookie = (await c.post("/update", json={"user": "ada"})).cookies["session"]
            sid = cookie.partition(".")[0]
            private_redis.freeze()
            try:
                for _ in range(2):  # and so does a retry while Redis is still away
                    response = await c.post(logout)
                    assert response.status_code == 500  # not "logged out"
                    assert "set-cookie" not in response.headers
                    assert c.cookies["session"] == cookie  # the client can retry
            finally:
                private_redis.thaw()
            # Redis is back: this process never serves the session again...
            assert (await c.get("/view")).json() == {"session": {}}
            # ...and the deletion lands, so no other process does either.
            async with with_cookie(other_app, cookie) as other:
                for _ in range(200):
                    if (await other.get("/view")).json() == {"session": {}}:
                        break
                    await c.get("/view")  # later requests here retry the deletion
                    await asyncio.sleep(0.05)
                assert (await other.get("/view")).json() == {"session": {}}
            assert await stored(elsewhere, sid) is None
            # A logout retried now succeeds (nothing left to end) and logs in no one.
            retried = await c.post(logout)
            assert retried.status_code == 200 and retried.json() == {"session": {}}
    finally:
        await here.aclose()
        await elsewhere.aclose()


async def test_a_logout_with_redis_stopped_answers_500(private_redis: RedisServer) -> None:
    cache = _outage_cache(private_redis)
    try:
        async with client(make_app(cache)) as c:
            await c.post("/update", json={"user": "ada"})
            private_redis.stop()
            with pytest.raises(CacheUnavailable):
                await c.post("/clear")
    finally:
        await cache.aclose()


@pytest.mark.parametrize("path", ["/update", "/rotate"])
async def test_a_login_or_rotation_during_an_outage_fails_loudly(
    private_redis: RedisServer, path: str
) -> None:
    cache = _outage_cache(private_redis)
    try:
        app = make_app(cache)
        async with (
            client(app, raise_app_exceptions=False) as c,
            client(app, raise_app_exceptions=False) as newcomer,
        ):
            cookie = (await c.post("/update", json={"cart": [1]})).cookies["session"]
            private_redis.freeze()
            try:
                response = await c.post(path, json={"user": "ada"})
                fresh = await newcomer.post("/update", json={"user": "ada"})  # no session yet
            finally:
                private_redis.thaw()
            assert response.status_code == 500 and "set-cookie" not in response.headers
            assert fresh.status_code == 500 and "set-cookie" not in fresh.headers
            assert c.cookies["session"] == cookie
            for _ in range(100):  # the anonymous session is untouched
                body = (await c.get("/view")).json()
                if body["session"]:
                    break
                await asyncio.sleep(0.05)
            assert body == {"session": {"cart": [1]}}
    finally:
        await cache.aclose()


# -- item 6: session data is signed by the middleware ------------------------------------------
def _tampered(blob: str, sid: str, other_blob: str) -> list[str]:
    prefix, _, data = blob.partition(".{")  # cks1.<expiry>.<mac>.{json}
    return [
        '{"user":"ada","is_admin":true}',  # what an unsigned session store held
        prefix + '.{"user":"ada","is_admin":true}',  # the data edited under its MAC
        prefix + ".{" + data.replace('"ada"', '"root"'),
        other_blob,  # another session's signed data, copied under this id
        blob.replace("cks1.", "cks1.9", 1),  # a later expiry
        "cks1.moved-not-quite",
        "cks1.\u00b2." + "A" * 43 + ".{}",  # a digit to str.isdigit(), not to int()
    ]


async def test_a_session_edited_in_redis_reads_as_no_session(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The cache has no secret_key of its own: the middleware's signature is all there is.
    cache = Cache.from_url(redis_url, l1=False, allow_unsigned=True)
    writer = Cache.from_url(redis_url, l1=False, allow_unsigned=True)  # someone with Redis access
    app = make_app(cache)
    try:
        async with client(app) as c, client(app) as someone:
            cookie = (await c.post("/update", json={"user": "ada"})).cookies["session"]
            sid = cookie.partition(".")[0]
            other = session_id(await someone.post("/update", json={"user": "ada", "x": 1}))
            blob, other_blob = await stored(cache, sid), await stored(cache, other)
            assert isinstance(blob, str) and isinstance(other_blob, str)
            assert (await c.get("/view")).json() == {"session": {"user": "ada"}}
            caplog.set_level(logging.WARNING)
            for n, forged in enumerate(_tampered(blob, sid, other_blob), start=1):
                assert await writer.records.awrite({PREFIX + sid: forged}, ttl=600)
                assert (await c.get("/view")).json() == {"session": {}}, forged
                assert cache.stats()["corrupt"] == n
            assert "signature" in caplog.text  # logged (at most once per 10 s)
            assert caplog.text.count("signature") == 1
            # The genuine blob put back still reads (a replay within its own lifetime: see
            # the module docstring), so the checks above rejected the edits, not the writer.
            assert await writer.records.awrite({PREFIX + sid: blob}, ttl=600)
            assert (await c.get("/view")).json() == {"session": {"user": "ada"}}
    finally:
        await cache.aclose()
        await writer.aclose()


async def test_a_session_kept_past_its_expiry_by_a_redis_writer_is_refused(
    redis_url: str,
) -> None:
    clock = Clock()
    cache = Cache.from_url(redis_url, l1=False, allow_unsigned=True, clock=clock)
    writer = Cache.from_url(redis_url, l1=False, allow_unsigned=True)
    app = make_app(cache, max_age=3600)
    try:
        async with client(app) as c:
            sid = session_id(await c.post("/update", json={"user": "ada"}))
            blob = await stored(cache, sid)
            assert await writer.records.awrite(
                {PREFIX + sid: blob}, ttl=10 * 24 * 3600
            )  # "no expiry"
            clock.advance(3700)
            assert (await c.get("/view")).json() == {"session": {}}
            assert cache.stats()["corrupt"] == 0  # expired, not forged
    finally:
        await cache.aclose()
        await writer.aclose()


async def test_session_data_is_bound_to_the_secret_prefix_and_namespace(redis_url: str) -> None:
    cache = Cache.from_url(redis_url, l1=False, allow_unsigned=True)
    elsewhere = Cache.from_url(redis_url, l1=False, allow_unsigned=True, namespace="other")
    try:
        async with client(make_app(cache)) as c:
            cookie = (await c.post("/update", json={"user": "ada"})).cookies["session"]
            sid = cookie.partition(".")[0]
            blob = await stored(cache, sid)
        targets = [
            (cache, "sessions2:", {"key_prefix": "sessions2:"}),
            (elsewhere, PREFIX, {}),
        ]
        for target, prefix, options in targets:
            assert await target.records.awrite({prefix + sid: blob}, ttl=600)
            async with with_cookie(make_app(target, **options), cookie) as c:
                assert (await c.get("/view")).json() == {"session": {}}
        # Another middleware secret: the cookie is refused already; its data would be too.
        other = SessionMiddleware(FastAPI(), "another-secret", cache=cache)
        assert other._unseal(sid, blob) is None
    finally:
        await cache.aclose()
        await elsewhere.aclose()


async def test_an_overflow_of_failed_writes_during_an_outage_deletes_no_session(
    private_redis: RedisServer,
) -> None:
    """Issue 11.1: 10,050 distinct page writes fail during an outage (any anonymous client can
    cause that); the queue overflows; when Redis is back its replay deletes cached entries only,
    never sessions (records)."""
    cache = Cache.from_url(
        private_redis.url, socket_timeout=0.2, breaker_cooldown=0.05, secret_key="test-secret"
    )
    app = make_app(cache)
    try:
        async with client(app) as c:
            cookie = (await c.post("/update", json={"user": "ada"})).cookies["session"]
            await cache.aset("page:/", "cached page", ttl=600)
            private_redis.freeze()  # the data stays; every call fails (then the breaker skips)
            try:
                for i in range(10_050):
                    await cache.aset(f"page:/search?q={i}", "x", ttl=600)
            finally:
                private_redis.thaw()
            await asyncio.sleep(0.1)
            assert await cache.aset("page:/after", "y", ttl=600)  # replays the overflow
            assert await cache.aget("page:/", "gone") == "gone"  # its own entries: dropped
            async with with_cookie(app, cookie) as again:
                assert (await again.get("/view")).json() == {"session": {"user": "ada"}}
    finally:
        await cache.aclose()
