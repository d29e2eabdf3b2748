"""Stampede protection: one loader call per key per expiry, in threads, tasks and processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time

import pytest

from cachekit_core import Cache
from tests.core import _workers


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Cache:
    if request.param == "memory":
        return Cache(namespace="stampede")
    url = request.getfixturevalue("redis_url")
    return Cache.from_url(url, namespace="stampede", secret_key="test-secret")


def test_32_threads_on_a_cold_key_call_the_loader_once(cache: Cache) -> None:
    calls = 0
    barrier = threading.Barrier(32)
    results: list[str] = []

    def loader() -> str:
        nonlocal calls
        calls += 1
        time.sleep(0.2)
        return "value"

    def worker() -> None:
        barrier.wait()
        results.append(cache.get_or_set("cold", loader, ttl=60))

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == 1
    assert results == ["value"] * 32
    cache.close()


async def test_50_tasks_on_a_cold_key_call_the_loader_once(cache: Cache) -> None:
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return "value"

    results = await asyncio.gather(*(cache.aget_or_set("cold", loader, ttl=60) for _ in range(50)))
    assert calls == 1
    assert results == ["value"] * 50
    await cache.aclose()


def test_loader_error_reaches_every_waiter_and_is_not_cached(cache: Cache) -> None:
    calls = 0
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def loader() -> str:
        nonlocal calls
        calls += 1
        time.sleep(0.1)
        raise RuntimeError("database down")

    def worker() -> None:
        barrier.wait()
        try:
            cache.get_or_set("boom", loader)
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == 1 and len(errors) == 8
    assert cache.get_or_set("boom", lambda: "recovered") == "recovered"
    cache.close()


def test_four_processes_sharing_redis_call_the_loader_once(redis_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    calls = ctx.Value("i", 0)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_workers.stampede_worker, args=(redis_url, "procs", barrier, calls, results)
        )
        for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert calls.value == 1
    assert got == ["loaded"] * 4


def test_tag_invalidated_in_one_process_misses_in_another_processes_l1_within_100ms(
    redis_url: str,
) -> None:
    cache = Cache.from_url(redis_url, namespace="xproc", secret_key="test-secret")
    cache.set("page", "v1", ttl=60, tags=["product:1"])
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_workers.l1_watcher, args=(redis_url, "xproc", ready, go, results))
    proc.start()
    try:
        assert ready.wait(30), "watcher did not start"
        go.set()
        cache.invalidate_tags("product:1")
        latency = results.get(timeout=10)
    finally:
        proc.join(timeout=10)
    assert latency is not None, "the other process kept serving the invalidated entry"
    assert latency < 0.1
    cache.close()


def test_a_redis_lock_held_by_a_dead_owner_delays_but_never_deadlocks(redis_url: str) -> None:
    cache = Cache.from_url(
        redis_url, namespace="locks", lock_wait=0.3, lock_ttl=30, secret_key="test-secret"
    )
    # A crashed process left its lock behind (its token is not ours).
    import redis

    client = redis.Redis.from_url(redis_url)
    client.set("locks:l:orphan", "someone-else", px=30_000)
    started = time.monotonic()
    assert cache.get_or_set("orphan", lambda: "mine") == "mine"
    waited = time.monotonic() - started
    assert 0.3 <= waited < 1.0
    assert cache.stats()["lock_timeouts"] == 1
    # Never released by a non-owner: the orphan's lock is still there.
    assert client.get("locks:l:orphan") == b"someone-else"
    client.close()
    cache.close()


def test_the_lock_is_released_by_its_owner_after_loading(redis_url: str) -> None:
    import redis

    cache = Cache.from_url(redis_url, namespace="locks2", secret_key="test-secret")
    client = redis.Redis.from_url(redis_url)
    seen: list[bytes | None] = []

    def loader() -> str:
        seen.append(client.get("locks2:l:k"))
        return "v"

    assert cache.get_or_set("k", loader) == "v"
    assert seen[0] is not None, "the loader ran without holding the lock"
    assert client.get("locks2:l:k") is None
    client.close()
    cache.close()
