"""Resilience against a real, misbehaving Redis (SPEC §1 "Resilience" and "Timeouts").

Every scenario runs against private ``redis-server`` processes (``tests/support/redis_server``)
that are absent, killed (SIGKILL), frozen (SIGSTOP: connections stay open, nothing answers) or
restarted empty. Redis is never mocked. Each scenario runs through the sync API and through
its awaitable twin (``mode``); latencies are measured with ``perf_counter`` around each call.

Bounds used below, with ``socket_timeout=TIMEOUT``:

- Redis absent:            every call < TIMEOUT + 0.10 s
- Redis frozen:            every call < TIMEOUT + 0.15 s (one socket timeout, never two)
- breaker open:            calls skip Redis: ``skipped`` grows, p90 < 5 ms, none > TIMEOUT / 2
- recovery:                Redis used again (L2 hits) within 3 s of restart()/thaw()
- lost invalidation:       replayed on the next call once Redis answers; another process' L1
                           drops the stale copy within ~1 s
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from cachekit_core import Cache, CacheUnavailable, MemoryLayer, RedisLayer
from tests.support.latency_proxy import LatencyProxy
from tests.support.redis_server import RedisServer, free_port

TIMEOUT = 0.2  # socket_timeout of every cache under test
COOLDOWN = 0.4  # breaker_cooldown
ABSENT_SLACK = 0.10
FROZEN_SLACK = 0.15
FAST = 0.005  # "skips Redis": a call that never waits on a socket
NAMESPACE = "res"
MODES = ["sync", "async"]
MISSING = object()

# Worst latency seen per scenario; printed at the end of the module (visible with -s).
WORST: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _latency_report() -> Any:
    yield
    if WORST:
        print(f"\nworst latency per scenario (socket_timeout={TIMEOUT:.2f}s):")
        for label, worst in sorted(WORST.items()):
            print(f"  {label:<60} {worst * 1000:8.1f} ms")


@pytest.fixture(autouse=True)
def _quiet_cachekit_logs(caplog: pytest.LogCaptureFixture) -> None:
    # Outages are logged loudly by design; keep the captured output readable.
    caplog.set_level(logging.CRITICAL, logger="cachekit")


# -- helpers ----------------------------------------------------------------------------------


class Runner:
    """Calls a cache operation through the API under test (``get`` or ``await aget``) and
    records how long it took."""

    def __init__(self, mode: str, label: str) -> None:
        self.mode = mode
        self.label = f"{label}[{mode}]"
        self.calls: list[tuple[str, float]] = []

    async def __call__(self, cache: Cache, op: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            if self.mode == "sync":
                return getattr(cache, op)(*args, **kwargs)
            return await getattr(cache, "a" + op)(*args, **kwargs)
        finally:  # timed whether it returns or raises
            elapsed = time.perf_counter() - started
            self.calls.append((op, elapsed))
            WORST[self.label] = max(WORST.get(self.label, 0.0), elapsed)

    @property
    def last(self) -> float:
        return self.calls[-1][1]

    def since(self, start: int) -> list[tuple[str, float]]:
        return self.calls[start:]

    def loader(self, value: Any, counter: list[int] | None = None) -> Callable[[], Any]:
        """A loader in the style of the mode: a plain function, or a coroutine function."""

        def load() -> Any:
            if counter is not None:
                counter.append(1)
            return value

        if self.mode == "sync":
            return load

        async def aload() -> Any:
            return load()

        return aload


def assert_all_below(calls: list[tuple[str, float]], bound: float, why: str) -> None:
    slow = [(op, round(t, 4)) for op, t in calls if t >= bound]
    assert not slow, f"{why}: calls slower than {bound:.3f}s: {slow}"


def assert_skipping(calls: list[tuple[str, float]]) -> None:
    """Calls that skipped Redis: none waits on a socket, and nearly all are sub-5 ms (the
    90th percentile; one scheduler hiccup on a busy machine must not fail the suite)."""
    assert_all_below(calls, TIMEOUT / 2, "breaker open: a call waited on Redis")
    latencies = sorted(t for _, t in calls)
    p90 = latencies[int(len(latencies) * 0.9) - 1] if len(latencies) >= 10 else latencies[-1]
    assert p90 < FAST, f"breaker open: p90 latency {p90 * 1000:.2f} ms >= 5 ms: {calls}"


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float, what: str, interval: float = 0.02
) -> float:
    """Poll ``check`` until true; return how long it took."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(interval)


def redis_stats(cache: Cache) -> dict[str, Any]:
    stats: dict[str, Any] = cache.stats()["layers"]["redis"]
    return stats


def memory_hits(cache: Cache) -> int:
    hits: int = cache.stats()["layers"]["memory"]["hits"]
    return hits


async def until_listening(cache: Cache, run: Runner) -> None:
    """Start the cache's invalidation listener and wait until it is subscribed.

    The listener clears L1 each time it (re)subscribes; tests that rely on L1 contents fill
    it only after that first reset."""
    await run(cache, "set", "__warm__", 1, ttl=60)

    async def listening() -> bool:
        return bool(redis_stats(cache)["listening"])

    await eventually(listening, 3.0, "the invalidation listener subscribes")
    await asyncio.sleep(0.05)  # on_connect (the L1 reset) runs just after `listening` is set


async def until_in_l1(cache: Cache, run: Runner, key: str, value: Any) -> None:
    """Read ``key`` until the cache serves ``value`` from its L1 (a fill is skipped when an
    invalidation broadcast lands during the L2 read)."""

    async def served_by_l1() -> bool:
        hits = memory_hits(cache)
        assert await run(cache, "get", key) == value
        return memory_hits(cache) == hits + 1

    await eventually(served_by_l1, 2.0, f"{key!r} is held by L1")


@pytest.fixture
def dead_url() -> str:
    """A loopback port with nothing listening: connection refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


MakeCache = Callable[..., Cache]


@pytest.fixture
async def make_cache() -> AsyncIterator[MakeCache]:
    """Build caches with small timeouts; all are closed (sync and async clients) at teardown."""
    made: list[Cache] = []

    def make(url: str, *, explicit_layers: bool = False, **options: Any) -> Cache:
        opts: dict[str, Any] = {
            "namespace": NAMESPACE,
            "socket_timeout": TIMEOUT,
            "breaker_cooldown": COOLDOWN,
            "breaker_threshold": 3,
            "secret_key": "test-secret",
        }
        opts.update(options)
        if explicit_layers:
            redis_opts = {
                k: opts.pop(k) for k in ("socket_timeout", "breaker_cooldown", "breaker_threshold")
            }
            cache = Cache(layers=[MemoryLayer(1000, ttl=30), RedisLayer(url, **redis_opts)], **opts)
        else:
            cache = Cache.from_url(url, **opts)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.aclose()


# -- 1. Redis absent ----------------------------------------------------------------------------


@pytest.mark.parametrize("l1", [True, False], ids=["l1+redis", "redis-only"])
@pytest.mark.parametrize("mode", MODES)
async def test_absent_redis_every_operation_falls_back_quickly(
    mode: str, l1: bool, dead_url: str, make_cache: MakeCache
) -> None:
    cache = make_cache(dead_url, l1=l1)
    run = Runner(mode, f"absent/{'l1+redis' if l1 else 'redis-only'}")
    loads: list[int] = []

    assert await run(cache, "get", "k", MISSING) is MISSING
    assert await run(cache, "get_many", ["a", "b"]) == {}
    assert await run(cache, "set", "k", "v", ttl=60, tags=["t"]) is l1  # kept by L1 only
    assert await run(cache, "set_many", {"a": 1, "b": 2}, ttl=60) is l1
    assert await run(cache, "get", "k", MISSING) == ("v" if l1 else MISSING)
    assert await run(cache, "add", "fresh", 1, ttl=60) in (True, False)
    for _ in range(2):
        loaded = await run(cache, "get_or_set", "g", run.loader(42, loads), ttl=60, tags=["t"])
        assert loaded == 42
    # With an L1 the loaded value is kept there, so the loader ran once; without, every time.
    assert len(loads) == (1 if l1 else 2)
    assert await run(cache, "get_or_set", "none", run.loader(None)) is None
    assert await run(cache, "delete", "k") in (True, False)
    assert await run(cache, "delete_many", ["a", "b", "zz"]) >= 0
    await run(cache, "invalidate_tags", "t", "u")
    # The invalidation is effective at once for this process even though Redis is gone.
    assert await run(cache, "get", "g", MISSING) is MISSING
    assert redis_stats(cache)["pending_invalidations"] > 0  # kept for replay
    await run(cache, "clear")
    assert await run(cache, "get", "b", MISSING) is MISSING

    assert_all_below(run.calls, TIMEOUT + ABSENT_SLACK, "Redis absent")
    stats = redis_stats(cache)
    assert stats["errors"] >= 3
    assert stats["circuit"] in ("open", "half-open")
    assert cache.stats()["invalidation_errors"] >= 2  # invalidate_tags and clear


# -- 2. Redis killed mid-use ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_killed_redis_l1_serves_loader_runs_and_breaker_skips_redis(
    mode: str, private_redis: RedisServer, make_cache: MakeCache
) -> None:
    cache = make_cache(private_redis.url, breaker_cooldown=1.0, l1_ttl=0.5)
    run = Runner(mode, "killed")
    await until_listening(cache, run)
    for i in range(5):
        await run(cache, "set", f"k{i}", i, ttl=60)
    for i in range(5):
        assert await run(cache, "get", f"k{i}") == i
    assert redis_stats(cache)["circuit"] == "closed"

    private_redis.stop()  # SIGKILL
    start = len(run.calls)

    # L1 keeps serving what it holds, without touching Redis.
    hits = memory_hits(cache)
    for i in range(5):
        assert await run(cache, "get", f"k{i}") == i
    assert memory_hits(cache) == hits + 5
    assert redis_stats(cache)["errors"] == 0

    # Reads that need Redis fail over to "miss"; the breaker opens after `threshold` errors.
    for i in range(3):
        assert await run(cache, "get", f"absent{i}") is None
    stats = redis_stats(cache)
    assert stats["errors"] == 3
    assert stats["circuit"] == "open"
    assert cache.stats()["circuit"] == "open"

    # The loader still answers.
    assert await run(cache, "get_or_set", "loaded", run.loader(7), ttl=60) == 7
    assert await run(cache, "get", "loaded") == 7  # and L1 kept its result

    # Once open, calls skip Redis entirely.
    skipped = redis_stats(cache)["skipped"]
    errors = redis_stats(cache)["errors"]
    fast_from = len(run.calls)
    for i in range(20):
        assert await run(cache, "get", f"other{i}") is None
    await run(cache, "set", "x", 1, ttl=60)
    await run(cache, "invalidate_tags", "t")
    assert await run(cache, "get_or_set", "other-load", run.loader("L"), ttl=60) == "L"
    assert_skipping(run.since(fast_from))
    assert redis_stats(cache)["skipped"] >= skipped + 23
    assert redis_stats(cache)["errors"] == errors  # nothing was attempted

    # Past L1's own trust window (l1_ttl=0.5) the copies are still served while Redis is down.
    await asyncio.sleep(0.6)
    for i in range(5):
        assert await run(cache, "get", f"k{i}") == i
    assert_all_below(run.since(start), TIMEOUT + ABSENT_SLACK, "Redis killed")


# -- 3. Redis frozen (SIGSTOP) ------------------------------------------------------------------

# (operation, args, kwargs) — each one is the first call to meet the frozen server on a cache
# with a closed breaker and an established connection, i.e. its worst case.
FROZEN_OPS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("get", ("absent",), {}),
    ("get_many", (["a1", "a2"],), {}),
    ("set", ("s", 1), {"ttl": 60}),
    ("set", ("st", 1), {"ttl": 60, "tags": ["t"]}),
    ("set_many", ({"m1": 1, "m2": 2},), {"ttl": 60}),
    ("add", ("ad", 1), {"ttl": 60}),
    ("get_or_set", ("gs",), {"ttl": 60}),
    ("get_or_set", ("gst",), {"ttl": 60, "tags": ["t"]}),
    ("invalidate_tags", ("t",), {}),
    ("delete", ("held",), {}),
    ("delete_many", (["a1", "a2"],), {}),
    ("clear", (), {}),
]


async def call_op(run: Runner, cache: Cache, op: str, args: tuple[Any, ...], kw: dict) -> Any:
    if op == "get_or_set":
        return await run(cache, op, *args, run.loader("loaded"), **kw)
    return await run(cache, op, *args, **kw)


def fresh_key(args: tuple[Any, ...], suffix: str) -> tuple[Any, ...]:
    """The same call on a key that L1 cannot answer (so it must go to Redis, or skip it)."""
    if args and isinstance(args[0], str):
        return (f"{args[0]}-{suffix}", *args[1:])
    return args


@pytest.mark.parametrize("mode", MODES)
async def test_frozen_redis_never_holds_a_call_much_longer_than_the_timeout(
    mode: str, private_redis: RedisServer, make_cache: MakeCache
) -> None:
    run = Runner(mode, "frozen")
    caches = [make_cache(private_redis.url, explicit_layers=True) for _ in FROZEN_OPS]
    for cache in caches:  # one pooled connection each, breakers closed
        assert await run(cache, "get", "absent") is None
    main = caches[0]
    await run(main, "set", "held", "v", ttl=60)
    assert await run(main, "get", "held") == "v"

    private_redis.freeze()
    try:
        first: list[tuple[str, float]] = []
        skipping: list[tuple[str, float]] = []
        for cache, (op, args, kw) in zip(caches, FROZEN_OPS, strict=True):
            # Each operation meets the hung server with a closed breaker: one timeout...
            result = await call_op(run, cache, op, args, kw)
            first.append(run.calls[-1])
            if op == "get_or_set":
                assert result == "loaded"
            # ...which opens the breaker at once (a timeout costs a full wait: no 3 strikes)...
            assert redis_stats(cache)["circuit"] == "open", op
            # ...so the same operation right after (on a key L1 does not hold) skips Redis.
            skipped = redis_stats(cache)["skipped"]
            await call_op(run, cache, op, fresh_key(args, "again"), kw)
            skipping.append(run.calls[-1])
            assert redis_stats(cache)["skipped"] > skipped, op
        assert_all_below(first, TIMEOUT + FROZEN_SLACK, "Redis frozen, breaker closed")
        # The calls really waited on the hung server (otherwise this test proves nothing).
        assert min(t for _, t in first) >= TIMEOUT * 0.9, first
        assert_skipping(skipping)

        # L1 still serves what it holds (the delete above ran on another cache).
        assert await run(main, "get", "held") == "v"
        assert run.last < FAST * 2

        # After the cooldown each cache lets one probe through: bounded again, then re-opens.
        await asyncio.sleep(COOLDOWN + 0.05)
        start = len(run.calls)
        for cache, (op, args, kw) in zip(caches, FROZEN_OPS, strict=True):
            assert redis_stats(cache)["circuit"] == "half-open", op
            await call_op(run, cache, op, fresh_key(args, "probe"), kw)
            assert redis_stats(cache)["circuit"] == "open", op
        assert_all_below(run.since(start), TIMEOUT + FROZEN_SLACK, "Redis frozen, probing")
    finally:
        private_redis.thaw()


@pytest.mark.parametrize("mode", MODES)
async def test_frozen_redis_bounds_concurrent_callers(
    mode: str, private_redis: RedisServer, make_cache: MakeCache
) -> None:
    """Sixteen callers at once on a hung server: each waits one timeout, in parallel (no call
    queues behind another's timeout on a pool or breaker lock)."""
    cache = make_cache(private_redis.url, l1=False, breaker_threshold=100)
    run = Runner(mode, "frozen/16 concurrent")
    assert await run(cache, "get", "warm") is None
    latencies: list[float] = []

    def one_sync(i: int) -> None:
        started = time.perf_counter()
        assert cache.get(f"c{i}", MISSING) is MISSING
        latencies.append(time.perf_counter() - started)

    async def one_async(i: int) -> None:
        started = time.perf_counter()
        assert await cache.aget(f"c{i}", MISSING) is MISSING
        latencies.append(time.perf_counter() - started)

    private_redis.freeze()
    try:
        started = time.perf_counter()
        if mode == "sync":
            threads = [threading.Thread(target=one_sync, args=(i,)) for i in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=10)
        else:
            await asyncio.gather(*(one_async(i) for i in range(16)))
        wall = time.perf_counter() - started
    finally:
        private_redis.thaw()
    assert len(latencies) == 16
    WORST[run.label] = max(latencies)
    assert max(latencies) < TIMEOUT + FROZEN_SLACK, sorted(latencies)
    assert wall < TIMEOUT + 0.3, f"callers were serialized: wall {wall:.3f}s"


# -- 4. Recovery ------------------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["restart", "freeze"])
@pytest.mark.parametrize("mode", MODES)
async def test_recovery_uses_redis_again_within_seconds(
    mode: str, outage: str, private_redis: RedisServer, make_cache: MakeCache
) -> None:
    run = Runner(mode, f"recovery/{outage}")
    cache = make_cache(private_redis.url)
    assert await run(cache, "get", "warm") is None

    if outage == "restart":
        private_redis.stop()
    else:
        private_redis.freeze()
    try:
        for i in range(3):
            assert await run(cache, "get", f"during{i}") is None
        assert redis_stats(cache)["circuit"] == "open"
    finally:
        if outage == "restart":
            private_redis.start()
        else:
            private_redis.thaw()
    recovered = time.monotonic()

    other = make_cache(private_redis.url, l1=False)  # "another process"
    assert await run(other, "set", "fresh", "from-other", ttl=60)
    redis_hits = redis_stats(cache)["hits"]

    async def sees_fresh() -> bool:
        return bool(await run(cache, "get", "fresh") == "from-other")

    await eventually(sees_fresh, 3.0, "a value written by another cache is read from Redis")
    assert time.monotonic() - recovered < 3.0
    stats = redis_stats(cache)
    assert stats["circuit"] == "closed"
    assert stats["hits"] > redis_hits

    # No reply of a timed-out command is ever read as the answer to a later one.
    assert await run(other, "set_many", {f"d{i}": i for i in range(10)}, ttl=60)
    for i in range(10):
        assert await run(cache, "get", f"d{i}") == i
    assert await run(cache, "set", "back", "ok", ttl=60)
    assert await run(other, "get", "back") == "ok"


# -- 5. Lost invalidations are replayed ---------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        "invalidate_tags",
        "invalidate_tags/timed-out",
        "delete",
        "set",
        "set_with_tags",
        "clear",
    ],
)
@pytest.mark.parametrize("mode", MODES)
async def test_changes_lost_during_an_outage_are_replayed(
    mode: str, change: str, private_redis: RedisServer, make_cache: MakeCache
) -> None:
    """A (the writer) and B (a reader whose L1 holds v1) share a Redis. Redis hangs, A changes
    the entry, Redis comes back, A makes any call: B must stop serving v1 within ~1 s, and
    Redis must not hold v1 either."""
    run = Runner(mode, "replay")
    a = make_cache(private_redis.url)
    b = make_cache(private_redis.url)
    await until_listening(a, run)
    await until_listening(b, run)
    assert await run(a, "set", "k", "v1", ttl=60, tags=["t"])
    await until_in_l1(b, run, "k", "v1")

    private_redis.freeze()
    try:
        if change != "invalidate_tags/timed-out":
            # Open A's breaker first, so the change below is never even sent: only a replay can
            # deliver it (a timed-out command may still run when the server thaws).
            assert await run(a, "get", "other") is None
            assert redis_stats(a)["circuit"] == "open"
        errors = a.stats()["invalidation_errors"]
        start = len(run.calls)
        if change.startswith("invalidate_tags"):
            await run(a, "invalidate_tags", "t")
            assert a.stats()["invalidation_errors"] == errors + 1
        elif change == "delete":
            await run(a, "delete", "k")
        elif change == "set":
            await run(a, "set", "k", "v2", ttl=60)
        elif change == "set_with_tags":
            await run(a, "set", "k", "v2", ttl=60, tags=["t"])
        else:
            await run(a, "clear")
            assert a.stats()["invalidation_errors"] == errors + 1
        assert_all_below(run.since(start), TIMEOUT + FROZEN_SLACK, "change during the outage")
        pending = redis_stats(a)["pending_invalidations"]  # checked last: symptoms first
        assert await run(a, "get", "k") != "v1"  # at once for the calling process
    finally:
        private_redis.thaw()

    # A makes "any call": once its breaker lets a probe through, the backlog goes first.
    async def replayed() -> bool:
        await run(a, "get", "unrelated")
        stats = redis_stats(a)
        return stats["circuit"] == "closed" and stats["pending_invalidations"] == 0

    await eventually(replayed, 3.0, "A replays its pending invalidations")

    async def b_dropped_v1() -> bool:
        return bool(await run(b, "get", "k") != "v1")

    took = await eventually(b_dropped_v1, 1.0, "B stops serving the invalidated value")
    WORST["replay: B drops v1, after A's replay (wait)"] = max(
        WORST.get("replay: B drops v1, after A's replay (wait)", 0.0), took
    )
    expected = (None, "v2") if change.startswith("set") else (None,)
    assert await run(b, "get", "k") in expected
    fresh = make_cache(private_redis.url, l1=False)  # what Redis itself holds now
    assert await run(fresh, "get", "k") in expected
    assert pending > 0, "the change was not recorded for replay"


async def test_a_pending_clear_is_reported(dead_url: str, make_cache: MakeCache) -> None:
    cache = make_cache(dead_url)
    cache.clear()
    assert cache.stats()["invalidation_errors"] == 1
    assert redis_stats(cache)["pending_invalidations"] > 0


# -- 6. raise_on_error=True -----------------------------------------------------------------------

RAISING_OPS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("get", ("k",), {}),
    ("get_many", (["k"],), {}),
    ("set", ("k", 1), {"ttl": 60}),
    ("get_or_set", ("k",), {"ttl": 60}),
    ("delete", ("k",), {}),
    ("invalidate_tags", ("t",), {}),
    ("clear", (), {}),
]


@pytest.mark.parametrize("outage", ["absent", "killed", "frozen"])
@pytest.mark.parametrize("mode", MODES)
async def test_raise_on_error_raises_cache_unavailable(
    mode: str, outage: str, private_redis: RedisServer, make_cache: MakeCache, dead_url: str
) -> None:
    run = Runner(mode, f"raise_on_error/{outage}")
    url = dead_url if outage == "absent" else private_redis.url
    cache = make_cache(url, raise_on_error=True)
    if outage != "absent":
        assert await run(cache, "get", "warm") is None
    if outage == "killed":
        private_redis.stop()
    elif outage == "frozen":
        private_redis.freeze()
    try:
        # First failures come from the call itself, later ones from the open breaker.
        for op, args, kw in RAISING_OPS + RAISING_OPS:
            with pytest.raises(CacheUnavailable):
                await call_op(run, cache, op, args, kw)
    finally:
        if outage == "frozen":
            private_redis.thaw()
    assert redis_stats(cache)["circuit"] in ("open", "half-open")
    failing = run.calls[-2 * len(RAISING_OPS) :]
    assert_all_below(failing, TIMEOUT + FROZEN_SLACK, "raise_on_error")
    if outage == "frozen":
        assert failing[0][1] >= TIMEOUT * 0.9  # the first one met the hung server
    assert_skipping(failing[1:])  # the rest were refused by the open breaker


@pytest.mark.parametrize("mode", MODES)
async def test_raise_on_error_still_replays_a_failed_invalidation(
    mode: str, private_redis: RedisServer, make_cache: MakeCache
) -> None:
    run = Runner(mode, "raise_on_error/replay")
    writer = make_cache(private_redis.url, raise_on_error=True)
    reader = make_cache(private_redis.url)
    await until_listening(reader, run)
    assert await run(writer, "set", "k", "v1", ttl=60, tags=["t"])
    await until_in_l1(reader, run, "k", "v1")
    private_redis.freeze()
    try:
        with pytest.raises(CacheUnavailable):
            await run(writer, "get", "other")  # times out: the writer's breaker opens
        with pytest.raises(CacheUnavailable):
            await run(writer, "invalidate_tags", "t")  # skipped: never sent to Redis
    finally:
        private_redis.thaw()

    async def writer_recovered() -> bool:
        try:
            await run(writer, "get", "unrelated")
        except CacheUnavailable:
            return False
        return bool(redis_stats(writer)["circuit"] == "closed")

    await eventually(writer_recovered, 3.0, "the writer uses Redis again")

    async def reader_dropped_v1() -> bool:
        return bool(await run(reader, "get", "k") != "v1")

    await eventually(reader_dropped_v1, 1.0, "the reader stops serving the invalidated value")


# -- 7. Redis restarted empty -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_restart_empty_listener_reconnects_and_drops_l1(
    mode: str, private_redis: RedisServer, make_cache: MakeCache
) -> None:
    run = Runner(mode, "restart-empty")
    a = make_cache(private_redis.url)
    b = make_cache(private_redis.url)
    await until_listening(a, run)
    assert await run(a, "set", "k", "v1", ttl=60, tags=["t"])
    assert await run(a, "set", "plain", "p", ttl=60)
    hits = memory_hits(a)
    assert await run(a, "get", "k") == "v1"
    assert await run(a, "get", "plain") == "p"
    assert memory_hits(a) == hits + 2

    private_redis.stop()

    async def not_listening() -> bool:
        return not redis_stats(a)["listening"]

    await eventually(not_listening, 2.0, "the listener notices the dead server")
    # Meanwhile another process invalidates: it cannot reach Redis, and nothing tells A.
    await run(b, "invalidate_tags", "t")
    assert redis_stats(b)["pending_invalidations"] > 0
    assert await run(a, "get", "k") == "v1"  # A's L1: still the best it has

    private_redis.start()  # empty: no entries, no tag versions, no memory of the broadcast
    restarted = time.monotonic()

    async def listening_again() -> bool:
        return bool(redis_stats(a)["listening"])

    await eventually(listening_again, 3.0, "the listener resubscribes after the restart")

    async def l1_dropped() -> bool:
        return bool(a.stats()["layers"]["memory"]["entries"] == 0)

    await eventually(l1_dropped, 1.0, "the resubscribed listener clears L1")
    WORST["restart-empty: L1 cleared, after start() (wait)"] = time.monotonic() - restarted
    hits = memory_hits(a)
    assert await run(a, "get", "k") is None
    assert await run(a, "get", "plain") is None
    assert memory_hits(a) == hits
    assert redis_stats(a)["circuit"] == "closed"


# -- closing during an outage -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_closing_during_a_freeze_is_bounded(
    mode: str, private_redis: RedisServer, make_cache: MakeCache
) -> None:
    run = Runner(mode, "close while frozen")
    cache = make_cache(private_redis.url)
    assert await run(cache, "get", "warm") is None  # connected; no listener yet
    private_redis.freeze()
    try:
        # The first L1 fill starts the listener, which now connects to the hung server.
        await run(cache, "set", "k", 1, ttl=60)
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        if mode == "sync":
            cache.close()
        else:
            await cache.aclose()
        elapsed = time.perf_counter() - started
    finally:
        private_redis.thaw()
    assert elapsed < TIMEOUT + FROZEN_SLACK, f"close() took {elapsed:.3f}s"


# -- 5. Slow but not dead ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_slow_redis_trips_the_breaker(
    mode: str, private_redis: RedisServer, make_cache: MakeCache
) -> None:
    """Answers just under the timeout never fail a call, yet make every request slow: calls
    slower than ``slow_call`` (socket_timeout / 2 by default) count as failures."""
    run = Runner(mode, "slow")
    with LatencyProxy(private_redis.port) as proxy:
        cache = make_cache(proxy.url, l1=False)
        assert cache.layers[0].health.slow_call == TIMEOUT / 2  # type: ignore[union-attr]
        await run(cache, "set", "k", "v", ttl=60)
        proxy.delay = 0.06  # each way: a 120 ms round trip, within the 200 ms timeout
        for _ in range(3):
            assert await run(cache, "get", "k") == "v"  # slow, but right
        stats = redis_stats(cache)
        assert (stats["circuit"], stats["slow_calls"], stats["timeouts"]) == ("open", 3, 0)
        assert abs(stats["circuit_opened_at"] - time.time()) < 5
        assert await run(cache, "get", "k") is None  # skipped while open
        assert run.last < FAST
        proxy.delay = 0.0

        async def healthy() -> bool:
            return bool(await run(cache, "get", "k") == "v")

        await eventually(healthy, COOLDOWN + 2.0, "healthy again: Redis is used")
        assert redis_stats(cache)["circuit"] == "closed"


# -- 6. Bursts beyond the connection pool -------------------------------------------------------


async def test_a_burst_beyond_max_connections_waits_for_a_connection(redis_url: str) -> None:
    """Writes are not batched: 200 at once on 8 connections queue for one (redis-py's default
    pool would raise at the 9th, counted as an outage, opening the breaker)."""
    cache = Cache.from_url(
        redis_url, l1=False, max_connections=8, socket_timeout=2.0, secret_key="test-secret"
    )
    try:
        await asyncio.gather(*(cache.aset(f"k{i}", i, ttl=60) for i in range(200)))
        values = await asyncio.gather(*(cache.aget_or_set(f"k{i}", lambda: -1) for i in range(200)))
        assert values == list(range(200))
        stats = redis_stats(cache)
        assert (stats["errors"], stats["circuit"]) == (0, "closed")
    finally:
        await cache.aclose()
        cache.close()


def test_threads_beyond_max_connections_wait_for_a_connection(redis_url: str) -> None:
    cache = Cache.from_url(
        redis_url, l1=False, max_connections=2, socket_timeout=2.0, secret_key="test-secret"
    )
    start = threading.Barrier(16)

    def work(i: int) -> None:
        start.wait()
        for j in range(20):
            cache.set(f"t{i}:{j}", j, ttl=60)
            assert cache.get(f"t{i}:{j}") == j

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        stats = redis_stats(cache)
        assert (stats["errors"], stats["circuit"]) == (0, "closed")
    finally:
        cache.close()
