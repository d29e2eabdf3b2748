"""Invalidations that race a load are never undone by it (issue 11, item 8).

A reader that loaded before a ``delete()`` / ``fn.invalidate()`` / an HTTP purge
(``invalidate_url`` after an unsafe method) used to store its old value after it, served for the
full TTL. Now a delete leaves a tombstone (a time-based version, as a tag bump makes one) and a
value computed from a snapshot taken before it is refused: in Redis by a script on the write
path, in process by the engine's record of its own deletes. The loader's value still goes back
to its caller; it is just never kept. Tags already worked this way; the HTTP cache now takes
its snapshot when the request is looked up, not when the view is bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cachekit_core import Cache, MemoryLayer
from cachekit_core.httpcache import MISS, HttpCache, Request, Response, ViewOptions
from cachekit_core.results import ReadStatus

redis = pytest.importorskip("redis")

SECRET = "test-secret"
MISSING = object()


@pytest.fixture
def caches() -> Iterator[list[Cache]]:
    made: list[Cache] = []
    yield made
    for cache in made:
        cache.close()


# (loader's cache, deleter's cache): one process, or two processes on one Redis.
SETUPS = ["memory", "redis", "l1_l2", "two_processes"]


@pytest.fixture(params=SETUPS)
def pair(request: pytest.FixtureRequest, caches: list[Cache]) -> tuple[Cache, Cache]:
    if request.param == "memory":
        cache = Cache([MemoryLayer()], namespace="race")
        caches.append(cache)
        return cache, cache
    url = request.getfixturevalue("redis_url")

    def make(l1: bool) -> Cache:
        cache = Cache.from_url(url, l1=l1, namespace="race", secret_key=SECRET)
        caches.append(cache)
        return cache

    if request.param == "two_processes":
        return make(True), make(True)
    cache = make(request.param == "l1_l2")
    return cache, cache


@contextlib.asynccontextmanager
async def closing(pair: tuple[Cache, Cache]) -> AsyncIterator[None]:
    """Close the asyncio connections of this loop (the fixture closes the sync ones)."""
    try:
        yield
    finally:
        for cache in set(pair):
            await cache.aclose()


class SlowLoader:
    """A loader that signals it started, then waits until released."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        self.started.set()
        assert self.release.wait(5)
        return self.value


def race(load: Callable[[], Any], loader: SlowLoader, invalidate: Callable[[], Any]) -> Any:
    """Run ``load`` in a thread; invalidate while the loader runs; return what load returned."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(load)
        assert loader.started.wait(5)
        invalidate()
        loader.release.set()
        return future.result(5)


# -- get_or_set / @cached ----------------------------------------------------------------------


def test_a_delete_during_a_load_is_not_undone(pair: tuple[Cache, Cache]) -> None:
    cache, deleter = pair
    loader = SlowLoader("old")
    got = race(lambda: cache.get_or_set("k", loader, ttl=60), loader, lambda: deleter.delete("k"))
    assert got == "old"  # the caller still gets what its loader returned
    assert cache.get("k", MISSING) is MISSING  # but it was never stored
    assert deleter.get("k", MISSING) is MISSING
    assert cache.read("k", local=False).status is ReadStatus.MISS
    assert cache.get_or_set("k", lambda: "new", ttl=60) == "new"
    assert deleter.get("k") == "new"


def test_a_load_that_starts_after_the_delete_is_stored(pair: tuple[Cache, Cache]) -> None:
    cache, deleter = pair
    deleter.delete("k")
    assert cache.get_or_set("k", lambda: "new", ttl=60) == "new"
    assert deleter.get("k") == "new"
    # and a plain set right after a delete is never refused (it is not computed from a read)
    deleter.delete("k")
    assert cache.set("k", "set", ttl=60) is True
    assert deleter.get("k") == "set"


def test_fn_invalidate_during_a_load_is_not_undone(pair: tuple[Cache, Cache]) -> None:
    cache, deleter = pair
    loader = SlowLoader({"name": "old"})

    @cache.cached(ttl=60, key="user:{user_id}")
    def user(user_id: int) -> Any:
        return loader()

    @deleter.cached(ttl=60, key="user:{user_id}")
    def same_user(user_id: int) -> Any:
        raise AssertionError("never called")

    assert race(lambda: user(1), loader, lambda: same_user.invalidate(1)) == {"name": "old"}
    assert cache.get("user:1", MISSING) is MISSING
    loader.value = {"name": "new"}
    assert user(1) == {"name": "new"}
    assert loader.calls == 2


async def test_async_delete_during_a_load_is_not_undone(pair: tuple[Cache, Cache]) -> None:
    async with closing(pair):
        await _async_delete_during_a_load(*pair)


async def _async_delete_during_a_load(cache: Cache, deleter: Cache) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def loader() -> str:
        started.set()
        await asyncio.wait_for(release.wait(), 5)
        return "old"

    task = asyncio.ensure_future(cache.aget_or_set("k", loader, ttl=60))
    await asyncio.wait_for(started.wait(), 5)
    await deleter.adelete("k")
    release.set()
    assert await task == "old"
    assert await cache.aget("k", MISSING) is MISSING
    assert await deleter.aget("k", MISSING) is MISSING
    assert await cache.aget_or_set("k", lambda: "new", ttl=60) == "new"


def test_a_stale_refresh_racing_a_delete_is_not_stored(redis_url: str, caches: list[Cache]) -> None:
    """The background refresh of stale-while-revalidate is a load too."""
    now = [time.time()]
    cache = Cache.from_url(redis_url, namespace="race", secret_key=SECRET, clock=lambda: now[0])
    other = Cache.from_url(redis_url, namespace="race", secret_key=SECRET)
    caches.extend([cache, other])
    cache.set("k", "v1", ttl=60, stale_ttl=600)
    now[0] += 120  # stale, within its stale window: served while one refresh runs
    loader = SlowLoader("v2, computed before the delete")
    assert cache.get_or_set("k", loader, ttl=60, stale_ttl=600) == "v1"
    assert loader.started.wait(5)
    other.delete("k")
    loader.release.set()
    cache.close()  # waits for the refresh to finish
    assert other.get("k", MISSING) is MISSING
    assert other.read("k", local=False).status is ReadStatus.MISS


def test_tombstones_outlive_the_lock(redis_url: str, caches: list[Cache]) -> None:
    cache = Cache.from_url(redis_url, namespace="race", secret_key=SECRET, lock_ttl=90)
    caches.append(cache)
    cache.delete("k")
    raw = redis.Redis.from_url(redis_url)
    [tombstone] = list(raw.scan_iter(match="race:d:*"))
    assert tombstone == b"race:d:{race:e:k}"  # hash tag: the entry's own cluster slot
    assert 89_000 < raw.pttl(tombstone) <= 90_000
    assert int(raw.get(tombstone)) > 0
    raw.close()


def test_on_a_cluster(cluster_url: str, caches: list[Cache]) -> None:
    """The write script reads the tombstone in the entry's own slot."""
    cache = Cache.from_url(cluster_url, namespace="race", secret_key=SECRET)
    other = Cache.from_url(cluster_url, namespace="race", secret_key=SECRET)
    caches.extend([cache, other])
    for key in ("a", "b", "user:42", "a b c"):  # keys of different slots
        loader = SlowLoader("old")
        got = race(
            lambda: cache.get_or_set(key, loader, ttl=60),  # noqa: B023
            loader,
            lambda: other.delete(key),  # noqa: B023
        )
        assert got == "old"
        assert other.read(key, local=False).status is ReadStatus.MISS
        assert cache.get_or_set(key, lambda: "new", ttl=60) == "new"
        assert other.get(key) == "new"
    assert cache.stats()["errors"] == 0


def test_scripts_are_loaded_again_after_a_script_flush(redis_url: str, caches: list[Cache]) -> None:
    """A restarted server has no scripts: the pipelined EVALSHAs load them and go again."""
    cache = Cache.from_url(redis_url, l1=False, namespace="race", secret_key=SECRET)
    caches.append(cache)
    raw = redis.Redis.from_url(redis_url)
    raw.script_flush()
    assert cache.delete_many(["k", "j"]) == 0
    assert raw.exists("race:d:{race:e:k}", "race:d:{race:e:j}") == 2
    raw.script_flush()
    assert cache.get_or_set("k", lambda: 1, ttl=60) == 1
    assert cache.get("k") == 1
    assert cache.stats()["errors"] == 0
    assert raw.info("commandstats")["cmdstat_script|load"]["calls"] >= 2  # NOSCRIPT was met
    raw.close()


def test_cluster_scripts_are_loaded_again_after_a_script_flush(
    cluster_url: str, caches: list[Cache]
) -> None:
    cache = Cache.from_url(cluster_url, namespace="race", secret_key=SECRET)
    caches.append(cache)
    raw = redis.RedisCluster.from_url(cluster_url.replace("redis+cluster", "redis"))
    raw.execute_command("SCRIPT FLUSH", target_nodes=redis.RedisCluster.ALL_NODES)
    keys = [f"k{i}" for i in range(8)]  # several slots
    cache.delete_many(keys)
    raw.execute_command("SCRIPT FLUSH", target_nodes=redis.RedisCluster.ALL_NODES)
    for key in keys:
        assert cache.get_or_set(key, lambda: 1, ttl=60) == 1
    assert cache.get_many(keys) == dict.fromkeys(keys, 1)
    assert cache.stats()["errors"] == 0
    raw.close()


# -- the HTTP cache ----------------------------------------------------------------------------


def req(method: str = "GET", path: str = "/p") -> Request:
    return Request(method, "http", "testserver", path, "", [])


PAGE = Response(200, [("Content-Type", "text/plain")], b"old page")
VIEW = ViewOptions(ttl=60, tags=("products",))
UNTAGGED_VIEW = ViewOptions(ttl=60)


def http_pair(pair: tuple[Cache, Cache]) -> tuple[HttpCache, HttpCache]:
    cache, other = pair
    return HttpCache(cache), HttpCache(other)


async def test_a_purge_while_a_page_renders_is_not_undone(pair: tuple[Cache, Cache]) -> None:
    async with closing(pair):
        await _purge_while_rendering(*http_pair(pair))


async def _purge_while_rendering(http: HttpCache, purger: HttpCache) -> None:
    lookup = await http.alookup(req(), UNTAGGED_VIEW)
    assert lookup.state == MISS
    # ... the view renders; meanwhile a POST to the URL succeeds elsewhere:
    await purger.ainvalidate_url(req("POST"))
    await http.astore(lookup, Response(PAGE.status, list(PAGE.headers), PAGE.body))
    again = await purger.alookup(req(), UNTAGGED_VIEW)
    assert again.state == MISS  # the page rendered before the purge was not stored
    assert (await http.alookup(req(), UNTAGGED_VIEW)).state == MISS


def test_a_purge_while_a_page_renders_is_not_undone_sync(pair: tuple[Cache, Cache]) -> None:
    http, purger = http_pair(pair)
    lookup = http.lookup(req(), VIEW)
    purger.invalidate_url(req("POST"))
    http.store(lookup, Response(PAGE.status, list(PAGE.headers), PAGE.body))
    assert purger.lookup(req(), VIEW).state == MISS
    # Control: without the purge, the same flow stores the page.
    lookup = http.lookup(req(), VIEW)
    http.store(lookup, Response(PAGE.status, list(PAGE.headers), PAGE.body))
    assert purger.lookup(req(), VIEW).state != MISS


async def test_the_snapshot_is_the_requests_start(pair: tuple[Cache, Cache]) -> None:
    """As FastAPI's kit.cache runs: the lookup at the request's start, the view bound (and
    its tags known) only after the dependencies ran. A tag invalidated in between means the
    dependencies may have read the old data: the page is not stored."""
    async with closing(pair):
        await _snapshot_at_start(*http_pair(pair))


async def _snapshot_at_start(http: HttpCache, other: HttpCache) -> None:
    lookup = await http.alookup(req(), None)  # before routing: the view is not known yet
    # ... the app's dependencies read the database; another request commits and invalidates:
    await other.cache.ainvalidate_tags("products")
    lookup = await http.abind_view(lookup, VIEW)  # the endpoint starts
    await http.astore(lookup, Response(PAGE.status, list(PAGE.headers), PAGE.body))
    assert (await other.alookup(req(), VIEW)).state == MISS
    # Control: the same flow with no invalidation stores the page.
    lookup = await http.abind_view(await http.alookup(req(), None), VIEW)
    await http.astore(lookup, Response(PAGE.status, list(PAGE.headers), PAGE.body))
    assert (await other.alookup(req(), VIEW)).state != MISS


def test_a_snapshot_taken_at_a_given_time_is_stale_after_a_bump(
    pair: tuple[Cache, Cache],
) -> None:
    from cachekit_core.results import now_us

    cache, other = pair
    since = now_us()
    other.invalidate_tags("t")
    snap = cache.snapshot(["t"], since=since)
    assert snap.stale
    assert cache.write({"k": 1}, ttl=60, snapshot=snap) is False
    assert other.get("k", MISSING) is MISSING
    fresh = cache.snapshot(["t"], since=now_us())
    assert not fresh.stale
    assert cache.write({"k": 2}, ttl=60, snapshot=fresh) is True
    assert other.get("k") == 2


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_fastapi_kit_cache_snapshots_at_the_requests_start(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """End to end, with no change to the adapter: the middleware looks the request up before
    routing; a dependency reads the database; a write commits and invalidates the page's tag
    before the endpoint (where ``kit.cache`` binds the view and its tags) runs. The page the
    endpoint renders from the old data is served to this request but never stored."""
    fastapi = pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from cachekit_fastapi import CacheKit

    if kind == "memory":
        cache = Cache(namespace="race")
    else:
        url = request.getfixturevalue("redis_url")
        cache = Cache.from_url(url, namespace="race", secret_key=SECRET)
    db = {"price": 1}
    writes_during_dependency: list[int] = []

    async def product_row() -> dict[str, int]:
        row = dict(db)  # the dependency reads the database...
        if writes_during_dependency:  # ...and a concurrent request commits right after
            db["price"] = writes_during_dependency.pop()
            await cache.ainvalidate_tags("products")
        return row

    app = fastapi.FastAPI()
    kit = CacheKit(app, cache)

    @app.get("/product")
    @kit.cache(ttl=60, tags=["products"], cache_control="public, max-age=60")
    async def product(row: dict[str, int] = fastapi.Depends(product_row)) -> dict[str, int]:  # noqa: B008
        return row

    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            writes_during_dependency.append(2)
            first = await client.get("/product")
            assert first.json() == {"price": 1}  # rendered from what the dependency read
            second = await client.get("/product")
            assert second.json() == {"price": 2}  # not the page rendered before the bump
            assert second.headers["X-Cache"] == "MISS"
            third = await client.get("/product")
            assert third.json() == {"price": 2} and third.headers["X-Cache"] == "HIT"
    finally:
        await cache.aclose()
