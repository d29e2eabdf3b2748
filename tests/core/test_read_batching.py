"""Concurrent single-key async reads share round trips (cachekit_core/layers/_batch.py).

Real redis-server processes throughout. Round trips are counted by Redis itself (``INFO
commandstats`` on a private server) or, on the cluster, where a pipeline of GETs counts one
call per GET, by standing in for ``tracing.SPANS``: ``_arun`` opens one span per round trip.
Frozen (SIGSTOP) servers hold a read in flight for as long as a test needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import pytest

from cachekit_core import Cache, CacheUnavailable, RedisLayer, tracing
from cachekit_core.layers._batch import LoopReads
from tests.support.redis_server import RedisServer

TIMEOUT = 0.3  # socket_timeout of the caches that meet a frozen or killed server
SLACK = 0.25  # a busy two-core machine: scheduling, not a second socket timeout
MISSING = object()
NS = "rb"


@pytest.fixture(autouse=True)
def _quiet_cachekit_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="cachekit")  # outages are expected here


class RoundTrips:
    """Stands in for tracing.SPANS: ``_arun`` opens one span per Redis round trip."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, int]] = []

    def redis(self, layer: Any, operation: str, batch: int = 0) -> contextlib.nullcontext[None]:
        self.ops.append((operation, batch))
        return contextlib.nullcontext()

    def load(self, namespace: str) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def on(self) -> bool:
        return True


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    recorder = RoundTrips()
    monkeypatch.setattr(tracing, "SPANS", recorder)
    return recorder


def calls(server: RedisServer) -> dict[str, int]:
    """Commands executed so far, by name, from the server's own counters."""
    counts: dict[str, int] = {}
    for line in server.cli("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, stats = line.partition(":")
            counts[name.removeprefix("cmdstat_")] = int(stats.split(",")[0].split("=")[1])
    return counts


def reads_since(server: RedisServer, before: dict[str, int]) -> dict[str, int]:
    now = calls(server)
    return {name: now.get(name, 0) - before.get(name, 0) for name in ("get", "mget")}


def layer_of(cache: Cache) -> RedisLayer:
    shared = cache.shared
    assert isinstance(shared, RedisLayer)
    return shared


def loop_reads(cache: Cache) -> LoopReads:
    return layer_of(cache).batcher.loop_reads()


# 100 keys: untagged, with one tag, with two tags, and never stored.
UNTAGGED = [f"u{i}" for i in range(35)]
ONE_TAG = [f"t{i}" for i in range(30)]
TWO_TAGS = [f"tt{i}" for i in range(15)]
ABSENT = [f"none{i}" for i in range(20)]
KEYS = UNTAGGED + ONE_TAG + TWO_TAGS + ABSENT


def value_of(key: str) -> Any:
    return None if key in ABSENT else {"key": key, "n": len(key)}


async def fill(cache: Cache) -> None:
    for key in UNTAGGED:
        await cache.aset(key, value_of(key), ttl=60)
    for i, key in enumerate(ONE_TAG):
        await cache.aset(key, value_of(key), ttl=60, tags=[f"g{i % 4}"])
    for i, key in enumerate(TWO_TAGS):
        await cache.aset(key, value_of(key), ttl=60, tags=[f"g{i % 4}", f"h{i % 3}"])


async def read_all(cache: Cache, keys: list[str]) -> None:
    """``keys`` read at once, one task each; every caller gets its own key's value."""
    got = await asyncio.gather(*(cache.aget(key, MISSING) for key in keys))
    want = [MISSING if key in ABSENT else value_of(key) for key in keys]
    assert got == want


def shuffled_twice(seed: int) -> list[str]:
    keys = KEYS * 2  # every key twice: duplicates land in the same batch
    random.Random(seed).shuffle(keys)
    return keys


# -- batching ---------------------------------------------------------------------------------
async def test_concurrent_reads_share_round_trips(
    private_redis: RedisServer, round_trips: RoundTrips
) -> None:
    writer = Cache.from_url(private_redis.url, namespace=NS, l1=False, secret_key="test-secret")
    reader = Cache.from_url(private_redis.url, namespace=NS, l1=False, secret_key="test-secret")
    await fill(writer)
    # A fresh reader does not know the entries' tags yet: its first read of a tagged entry
    # also fetches the tags' versions (another single read, batched the same way).
    before = calls(private_redis)
    await read_all(reader, shuffled_twice(1))
    delta = reads_since(private_redis, before)
    assert delta["get"] + delta["mget"] <= 12, delta

    before, round_trips.ops[:] = calls(private_redis), []
    await read_all(reader, shuffled_twice(2))  # now each read alone is one GET or one MGET
    delta = reads_since(private_redis, before)
    assert delta["get"] + delta["mget"] <= 8, delta  # 200 reads alone: 200 round trips
    assert len(round_trips.ops) == delta["get"] + delta["mget"]  # one span per round trip
    assert {op for op, _ in round_trips.ops} <= {"GET", "MGET"}
    assert not loop_reads(reader).busy and not loop_reads(reader).queue
    await writer.aclose()
    await reader.aclose()


async def test_a_lone_read_is_one_get(private_redis: RedisServer) -> None:
    cache = Cache.from_url(private_redis.url, namespace=NS, l1=False, secret_key="test-secret")
    await cache.aset("plain", 1, ttl=60)
    await cache.aset("tagged", 2, ttl=60, tags=["g"])  # the cache now knows its tag

    before = calls(private_redis)
    assert await cache.aget("plain") == 1
    assert reads_since(private_redis, before) == {"get": 1, "mget": 0}
    before = calls(private_redis)
    assert await cache.aget("tagged") == 2
    assert reads_since(private_redis, before) == {"get": 0, "mget": 1}  # entry + tag version
    before = calls(private_redis)
    for _ in range(5):  # one after the other: never a batch
        assert await cache.aget("plain") == 1
    assert reads_since(private_redis, before) == {"get": 5, "mget": 0}
    await cache.aclose()


async def test_batches_are_bounded(
    private_redis: RedisServer, round_trips: RoundTrips, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache.from_url(private_redis.url, namespace=NS, l1=False, secret_key="test-secret")
    await fill(cache)
    monkeypatch.setattr(layer_of(cache).batcher, "max_keys", 8)
    round_trips.ops.clear()
    await read_all(cache, UNTAGGED)  # 1 alone, then 34 keys in batches of at most 8
    assert len(round_trips.ops) == 1 + 5
    await read_all(cache, shuffled_twice(3))  # tagged rows (up to 3 keys) fit too
    await cache.aclose()


async def test_kill_switch_sends_each_read_alone(
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache.from_url(private_redis.url, namespace=NS, l1=False, secret_key="test-secret")
    await fill(cache)
    keys = UNTAGGED + ONE_TAG[:10] + ABSENT[:5]  # fewer than the pool's 64 connections
    await read_all(cache, keys)  # learn the tags
    monkeypatch.setattr(layer_of(cache).batcher, "enabled", False)
    before = calls(private_redis)
    await read_all(cache, keys)
    delta = reads_since(private_redis, before)
    assert delta["get"] + delta["mget"] == len(keys)
    await cache.aclose()


async def test_concurrent_reads_on_a_cluster(cluster_url: str, round_trips: RoundTrips) -> None:
    writer = Cache.from_url(cluster_url, namespace=NS, l1=False, secret_key="test-secret")
    reader = Cache.from_url(cluster_url, namespace=NS, l1=False, secret_key="test-secret")
    await fill(writer)
    await read_all(reader, shuffled_twice(4))
    round_trips.ops.clear()
    await read_all(reader, shuffled_twice(5))
    # One pipeline of GETs per batch (entries and tags live in different slots).
    assert len(round_trips.ops) <= 8, round_trips.ops
    assert {op for op, _ in round_trips.ops} <= {"GET", "PIPELINE"}
    assert max(size for _, size in round_trips.ops) > 50
    await writer.aclose()
    await reader.aclose()


class Race:
    """Readers that record any value they get from a read begun after the invalidation."""

    def __init__(self, reader: Cache, keys: list[str]) -> None:
        self.reader, self.keys = reader, keys
        self.invalidated = self.stop = False
        self.stale: list[tuple[str, Any]] = []
        self.served = 0

    async def read_loop(self, offset: int) -> None:
        i = offset
        while not self.stop:
            after = self.invalidated  # the invalidation completed before this read began
            key = self.keys[i % len(self.keys)]
            value = await self.reader.aget(key)
            self.served += value is not None
            if after and value is not None:
                self.stale.append((key, value))
            i += 1


@pytest.mark.parametrize("invalidator", ["other process", "same cache"])
async def test_no_read_returns_a_value_invalidated_before_it_started(
    redis_url: str, invalidator: str
) -> None:
    reader = Cache.from_url(redis_url, namespace=NS, l1=False, secret_key="test-secret")
    writer = (
        reader
        if invalidator == "same cache"
        else Cache.from_url(redis_url, namespace=NS, secret_key="test-secret")
    )
    keys = [f"k{i}" for i in range(12)]
    for round_ in range(15):
        for key in keys:
            await writer.aset(key, round_, ttl=60, tags=["grp", "x"] if key == "k0" else ["grp"])
        race = Race(reader, keys)
        readers = [asyncio.create_task(race.read_loop(n)) for n in range(24)]
        await asyncio.sleep(0.002 * (round_ % 5))  # invalidate at varying points
        await writer.ainvalidate_tags("grp")
        race.invalidated = True
        await asyncio.sleep(0.01)
        race.stop = True
        await asyncio.gather(*readers)
        assert not race.stale, (round_, race.stale[:5])
        assert race.served > 0 or round_ % 5 == 0  # values were visible before it
    if writer is not reader:
        await writer.aclose()
    await reader.aclose()


# -- cancellation -----------------------------------------------------------------------------
async def start_reads(cache: Cache, keys: list[str]) -> list[asyncio.Task[Any]]:
    """One read per key; with Redis frozen, the first is in flight and the others queue."""
    tasks = [asyncio.create_task(cache.aget(key, MISSING)) for key in keys]
    await asyncio.sleep(0.05)
    reads = loop_reads(cache)
    assert reads.busy and len(reads.queue) == len(keys) - 1
    return tasks


async def test_a_caller_cancelled_while_queued(private_redis: RedisServer) -> None:
    cache = Cache.from_url(
        private_redis.url, namespace=NS, l1=False, socket_timeout=2.0, secret_key="test-secret"
    )
    await fill(cache)
    keys = UNTAGGED[:10]
    private_redis.freeze()
    try:
        tasks = await start_reads(cache, keys)
        tasks[3].cancel()
    finally:
        private_redis.thaw()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 3] == [
        value_of(k) for i, k in enumerate(keys) if i != 3
    ]
    await asyncio.sleep(0)
    assert not loop_reads(cache).busy
    before = calls(private_redis)
    assert await cache.aget(keys[0]) == value_of(keys[0])  # alone again: one GET
    assert reads_since(private_redis, before) == {"get": 1, "mget": 0}
    await cache.aclose()


async def batch_in_flight(cache: Cache, keys: list[str]) -> list[asyncio.Task[Any]]:
    """With Redis frozen: cancel the read in flight, so the queued ones go out as a batch
    that hangs (a cancelled read hands its turn over at once)."""
    tasks = await start_reads(cache, keys)
    tasks[0].cancel()
    await asyncio.sleep(0.05)
    reads = loop_reads(cache)
    assert reads.busy and reads.task is not None and not reads.task.done()
    assert not reads.queue
    return tasks


async def test_a_caller_cancelled_while_its_batch_is_in_flight(private_redis: RedisServer) -> None:
    cache = Cache.from_url(
        private_redis.url, namespace=NS, l1=False, socket_timeout=2.0, secret_key="test-secret"
    )
    await fill(cache)
    keys = UNTAGGED[:10]
    private_redis.freeze()
    try:
        tasks = await batch_in_flight(cache, keys)
        tasks[4].cancel()
    finally:
        private_redis.thaw()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert isinstance(results[4], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i not in (0, 4)] == [
        value_of(k) for i, k in enumerate(keys) if i not in (0, 4)
    ]
    assert layer_of(cache).breaker.state == "closed" and layer_of(cache).health.errors == 0
    await cache.aclose()


async def test_a_cancelled_batch_releases_its_callers(private_redis: RedisServer) -> None:
    cache = Cache.from_url(
        private_redis.url, namespace=NS, l1=False, socket_timeout=2.0, secret_key="test-secret"
    )
    await fill(cache)
    keys = UNTAGGED[:10]
    private_redis.freeze()
    try:
        tasks = await batch_in_flight(cache, keys)
        batch = loop_reads(cache).task
        assert batch is not None
        # Reads that queue behind the doomed batch are sent after it, not dropped.
        later = asyncio.create_task(cache.aget(keys[1], MISSING))
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        batch.cancel()
        results = await asyncio.gather(*tasks[1:])  # while Redis is still frozen
        assert time.perf_counter() - started < 0.5
        assert results == [MISSING] * 9  # unavailable: a miss, no exception
    finally:
        private_redis.thaw()
    assert await later == value_of(keys[1])
    await asyncio.sleep(0)
    assert not loop_reads(cache).busy
    assert await cache.aget(keys[2]) == value_of(keys[2])
    assert layer_of(cache).breaker.state == "closed"
    await cache.aclose()


async def test_cancelling_every_task_at_once_leaves_nothing_pending(
    private_redis: RedisServer,
) -> None:
    """What asyncio.run does when its main coroutine returns: no batch may outlive it."""
    cache = Cache.from_url(
        private_redis.url, namespace=NS, l1=False, socket_timeout=2.0, secret_key="test-secret"
    )
    await fill(cache)
    problems: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: problems.append(context))
    current = asyncio.current_task()
    private_redis.freeze()
    try:
        tasks = await batch_in_flight(cache, UNTAGGED[:10])
        tasks += [asyncio.create_task(cache.aget(key)) for key in UNTAGGED[10:15]]
        await asyncio.sleep(0.01)
        assert len(loop_reads(cache).queue) == 5  # queued behind the batch in flight
        everything = [task for task in asyncio.all_tasks() if task is not current]
        for task in everything:
            task.cancel()
        await asyncio.gather(*everything, return_exceptions=True)
        assert [task for task in asyncio.all_tasks() if task is not current] == []
        assert not loop_reads(cache).busy
    finally:
        private_redis.thaw()
    assert await cache.aget(UNTAGGED[0]) == value_of(UNTAGGED[0])
    await cache.aclose()
    assert not problems


# -- outages while reads queue ----------------------------------------------------------------
async def timed_reads(cache: Cache, keys: list[str]) -> tuple[list[Any], list[float]]:
    async def one(key: str) -> tuple[Any, float]:
        started = time.perf_counter()
        value = await cache.aget(key, MISSING)
        return value, time.perf_counter() - started

    tasks = [asyncio.create_task(one(key)) for key in keys]
    await asyncio.sleep(0.02)
    reads = loop_reads(cache)
    assert reads.busy and reads.queue  # one in flight, the others queued
    done = await asyncio.gather(*tasks)
    return [v for v, _ in done], [t for _, t in done]


async def test_frozen_redis_with_reads_queued(private_redis: RedisServer) -> None:
    cache = Cache.from_url(
        private_redis.url, namespace=NS, l1=False, socket_timeout=TIMEOUT, secret_key="test-secret"
    )
    await fill(cache)
    layer = layer_of(cache)
    private_redis.freeze()
    try:
        values, latencies = await timed_reads(cache, UNTAGGED[:20])
        assert values == [MISSING] * 20
        assert max(latencies) < TIMEOUT + SLACK, latencies  # one timeout, never two
        # The read in flight timed out (a timeout opens the breaker at once, as before); the
        # queued batch then skipped Redis instead of waiting a second timeout.
        assert layer.breaker.state == "open" and layer.breaker.opened == 1
        assert layer.health.errors == 1 and layer.health.skipped == 1
    finally:
        private_redis.thaw()
    await asyncio.sleep(layer.breaker.cooldown + 0.05)
    assert await cache.aget("u0") == value_of("u0")  # the probe closes the breaker
    assert layer.breaker.state == "closed"
    await read_all(cache, UNTAGGED)  # and batching resumes
    await cache.aclose()


async def test_killed_redis_with_reads_queued(private_redis: RedisServer) -> None:
    cache = Cache.from_url(
        private_redis.url,
        namespace=NS,
        l1=False,
        socket_timeout=TIMEOUT,
        breaker_threshold=3,
        secret_key="test-secret",
    )
    await fill(cache)
    layer = layer_of(cache)
    private_redis.freeze()
    task = asyncio.create_task(timed_reads(cache, UNTAGGED[:20]))
    await asyncio.sleep(0.05)
    # SIGKILL while still frozen (stop() alone thaws first, and the read in flight might
    # then be answered): the read in flight and the batch after it both fail.
    assert private_redis.process is not None
    private_redis.process.kill()
    private_redis.stop()
    values, latencies = await task
    assert values == [MISSING] * 20
    assert max(latencies) < TIMEOUT + SLACK, latencies
    assert 1 <= layer.health.errors <= 2  # one failure per round trip, not one per read
    # The breaker counts on: more failures open it, then reads skip Redis.
    while layer.breaker.state == "closed":
        assert await cache.aget("u0", MISSING) is MISSING
    assert layer.health.errors == 3
    started = time.perf_counter()
    assert await cache.aget("u0", MISSING) is MISSING
    assert time.perf_counter() - started < 0.05 and layer.health.skipped >= 1
    await cache.aclose()


async def test_raise_on_error_reaches_every_queued_caller(private_redis: RedisServer) -> None:
    cache = Cache.from_url(
        private_redis.url,
        namespace=NS,
        l1=False,
        socket_timeout=TIMEOUT,
        raise_on_error=True,
        secret_key="test-secret",
    )
    await fill(cache)
    private_redis.freeze()
    try:
        tasks = [asyncio.create_task(cache.aget(key)) for key in UNTAGGED[:10]]
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        private_redis.thaw()
    assert all(isinstance(r, CacheUnavailable) for r in results), results
    await cache.aclose()
