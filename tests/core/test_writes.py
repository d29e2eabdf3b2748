"""Write-through and write-behind (cachekit_core/writes.py), on real redis-server processes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from cachekit_core import Cache, ConfigurationError, WriteBehind

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@contextmanager
def worker_thread(wb: WriteBehind) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=wb.run_worker, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(5)
        assert not thread.is_alive()


@pytest.fixture
def rcache(redis_url: str) -> Iterator[Cache]:
    cache = Cache.from_url(redis_url, namespace="wt", secret_key="test-secret")
    yield cache
    cache.close()


# -- write-through -------------------------------------------------------------------------------
def test_write_through_writes_the_store_then_caches(rcache: Cache, redis_url: str) -> None:
    store: dict[str, Any] = {}

    def writer(value: Any) -> str:
        assert rcache.get("user:1") is None  # the store is written before the cache
        store["user:1"] = value
        return "row-1"

    assert rcache.write_through("user:1", {"name": "Ada"}, writer, ttl=60) == "row-1"
    assert store == {"user:1": {"name": "Ada"}}
    with Cache.from_url(
        redis_url, namespace="wt", secret_key="test-secret"
    ) as other:  # it reached Redis too
        assert other.get("user:1") == {"name": "Ada"}


@pytest.mark.parametrize("layers", ["memory", "redis"])
def test_writer_error_leaves_no_copy(layers: str, request: pytest.FixtureRequest) -> None:
    if layers == "memory":
        cache = Cache(namespace="wt")
    else:
        cache = Cache.from_url(
            request.getfixturevalue("redis_url"), namespace="wt", secret_key="test-secret"
        )
    with cache:
        cache.set("user:1", "old")

        def writer(value: Any) -> None:
            raise RuntimeError("database is down")

        with pytest.raises(RuntimeError, match="database is down"):
            cache.write_through("user:1", "new", writer)
        # Neither the new value (never stored) nor the old one (the store may have changed).
        assert cache.get("user:1") is None
        if layers == "redis":
            assert cache.local is not None
            cache.local.clear()
            assert cache.get("user:1") is None


def test_sync_write_through_refuses_an_async_writer(rcache: Cache) -> None:
    rcache.set("k", "old")

    async def writer(value: Any) -> None:
        raise AssertionError("never awaited")

    with pytest.raises(TypeError, match="awrite_through"):
        rcache.write_through("k", "new", writer)
    assert rcache.get("k") is None


async def test_awrite_through_with_sync_and_async_writers(rcache: Cache) -> None:
    store: dict[str, Any] = {}

    async def awriter(value: Any) -> int:
        await asyncio.sleep(0)
        store["a"] = value
        return 1

    assert await rcache.awrite_through("a", [1, 2], awriter, tags=["t"]) == 1
    assert await rcache.aget("a") == [1, 2]
    assert await rcache.awrite_through("b", "x", lambda v: store.setdefault("b", v)) == "x"
    assert await rcache.aget("b") == "x"

    async def failing(value: Any) -> None:
        raise ValueError("constraint violated")

    with pytest.raises(ValueError, match="constraint"):
        await rcache.awrite_through("a", [3], failing)
    assert await rcache.aget("a") is None
    await rcache.aclose()


# -- write-behind --------------------------------------------------------------------------------
def test_write_behind_without_redis_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="needs a Redis layer"):
        Cache().write_behind("page_views", flush=lambda items: None)


def test_submit_is_durable_and_worker_flushes_in_batches(rcache: Cache, redis_url: str) -> None:
    batches: list[list[tuple[str, Any]]] = []
    wb = rcache.write_behind("views", flush=batches.append, batch_size=4, interval=0.05)
    for i in range(10):
        wb.submit(f"post:{i}", {"views": i})
    # Durable before any worker ran: the entries are in the stream, in order.
    client = redis.Redis.from_url(redis_url)
    assert client.xlen("wt:s:views") == 10
    assert wb.pending() == 10
    with worker_thread(wb):
        wait_until(lambda: wb.pending() == 0)
    items = [item for batch in batches for item in batch]
    assert items == [(f"post:{i}", {"views": i}) for i in range(10)]
    assert max(len(b) for b in batches) <= 4
    assert client.xpending("wt:s:views", "cachekit")["pending"] == 0
    client.close()


def test_failed_flush_acks_nothing_and_is_retried(
    rcache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[list[tuple[str, Any]]] = []

    def flush(items: list[tuple[str, Any]]) -> None:
        calls.append(list(items))
        if len(calls) <= 2:
            raise OSError("store unavailable")

    wb = rcache.write_behind("views", flush=flush, interval=0.05, max_retry_delay=0.1)
    wb.submit("a", 1)
    wb.submit("b", 2)
    with caplog.at_level(logging.ERROR, "cachekit.writes"), worker_thread(wb):
        wait_until(lambda: len(calls) >= 2)
        assert wb.pending() == 2  # failed twice: still there, nothing acknowledged
        wait_until(lambda: wb.pending() == 0)
    assert calls == [[("a", 1), ("b", 2)]] * 3
    assert wb.flush_errors == 2 and wb.flushed == 2
    assert "write-behind flush failed" in caplog.text


def test_crashed_consumers_entries_are_reclaimed(rcache: Cache, redis_url: str) -> None:
    got: list[tuple[str, Any]] = []
    wb = rcache.write_behind("views", flush=got.extend, interval=0.05, min_idle=0.2)
    wb.submit("a", 1)
    wb.submit("b", 2)
    # A worker that read both entries and died before acknowledging them.
    client = redis.Redis.from_url(redis_url)
    client.xgroup_create("wt:s:views", "cachekit", id="0")
    client.xreadgroup("cachekit", "dead-worker", {"wt:s:views": ">"}, count=10)
    assert client.xpending("wt:s:views", "cachekit")["pending"] == 2
    with worker_thread(wb):
        wait_until(lambda: wb.pending() == 0)
    assert sorted(got) == [("a", 1), ("b", 2)]
    client.close()


def test_forged_and_unsigned_stream_entries_are_rejected(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = Cache.from_url(redis_url, namespace="wt", secret_key="s3cret")
    got: list[tuple[str, Any]] = []
    wb = cache.write_behind("views", flush=got.extend, interval=0.05)
    wb.submit("good:1", {"v": 1})
    client = redis.Redis.from_url(redis_url)
    genuine = client.xrange("wt:s:views")[0][1]
    # Someone with write access to Redis (but not the secret) tries to inject writes.
    client.xadd("wt:s:views", {"d": genuine[b"d"]})  # signature stripped
    client.xadd("wt:s:views", {"d": b"\x92\xa4evil\x01", "s": genuine[b"s"]})  # swapped payload
    other = Cache.from_url(redis_url, namespace="wt", secret_key="another-key")
    other.write_behind("views", flush=got.extend).submit("evil:2", 2)  # wrong key
    client.xadd("wt:s:views", {"junk": b"1"})  # not an entry at all
    wb.submit("good:2", {"v": 2})
    with caplog.at_level(logging.WARNING, "cachekit"), worker_thread(wb):
        wait_until(lambda: wb.pending() == 0)
    assert got == [("good:1", {"v": 1}), ("good:2", {"v": 2})]
    assert wb.rejected == 4
    assert cache.stats()["corrupt"] == 4
    assert "rejected" in caplog.text
    client.close()
    other.close()
    cache.close()


async def test_async_worker_with_async_and_sync_flush(rcache: Cache) -> None:
    got: list[tuple[str, Any]] = []

    async def aflush(items: list[tuple[str, Any]]) -> None:
        await asyncio.sleep(0)
        got.extend(items)

    for flush in (aflush, got.extend):
        got.clear()
        wb = rcache.write_behind("aviews", flush=flush, batch_size=3, interval=0.05)
        for i in range(7):
            await wb.asubmit(f"k{i}", i)
        assert await wb.apending() == 7
        stop = asyncio.Event()
        task = asyncio.create_task(wb.arun_worker(stop))
        for _ in range(500):  # up to 5 s
            if not await wb.apending():
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert got == [(f"k{i}", i) for i in range(7)]
    await rcache.aclose()


def test_worker_recreates_a_deleted_stream(rcache: Cache, redis_url: str) -> None:
    got: list[tuple[str, Any]] = []
    wb = rcache.write_behind("views", flush=got.extend, interval=0.05)
    client = redis.Redis.from_url(redis_url)
    with worker_thread(wb):
        wb.submit("a", 1)
        wait_until(lambda: got == [("a", 1)])
        # The stream is lost (deleted by hand, or a Redis restart without persistence).
        client.delete(rcache.keyspace.stream("views"))
        wb.submit("b", 2)
        wait_until(lambda: got == [("a", 1), ("b", 2)])
    client.close()


def test_clear_keeps_unflushed_writes(rcache: Cache) -> None:
    got: list[tuple[str, Any]] = []
    wb = rcache.write_behind("views", flush=got.extend, interval=0.05)
    wb.submit("a", 1)
    rcache.set("cached", "copy")
    rcache.clear()  # drops cached copies, never writes that have not reached the store
    assert rcache.get("cached") is None
    assert wb.pending() == 1
    with worker_thread(wb):
        wait_until(lambda: got == [("a", 1)])


# -- the crash test ------------------------------------------------------------------------------
@pytest.mark.slow
def test_no_write_is_lost_when_workers_are_killed_mid_flush(redis_url: str, tmp_path: Path) -> None:
    total, kills = 5000, 4
    db_path = str(tmp_path / "store.sqlite3")
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE store (key TEXT PRIMARY KEY, value INTEGER, deliveries INTEGER)")
    db.execute("CREATE TABLE commits (n INTEGER)")
    db.execute("INSERT INTO commits VALUES (0)")

    cache = Cache.from_url(redis_url, namespace="crash", secret_key="test-secret")
    wb = cache.write_behind("views", flush=lambda items: None)
    for i in range(total):
        wb.submit(f"post:{i}", {"n": i})
    assert wb.pending() == total

    def distinct() -> int:
        return int(db.execute("SELECT COUNT(*) FROM store").fetchone()[0])

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.core._writer_worker", redis_url, "crash", db_path],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    started = time.monotonic()
    killed_at: list[int] = []
    for round_ in range(1, kills + 1):
        proc = start()
        try:
            # Let it flush some batches of its own, then crash it mid-flush: the flush writes
            # each batch of 100 in two commits with a pause after each, so a target 50 short
            # of a round number kills it with the batch half written, a round number with
            # the batch fully written; either way not yet acknowledged.
            target = round_ * total // (kills + 1) - (50 if round_ % 2 else 0)
            wait_until(lambda target=target: distinct() >= target, timeout=30)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        killed_at.append(distinct())
    assert wb.pending() > 0  # work was left for the next workers

    proc = start()
    try:
        wait_until(lambda: wb.pending() == 0 and distinct() == total, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    elapsed = time.monotonic() - started

    assert distinct() == total
    rows = db.execute("SELECT key, value FROM store").fetchall()
    assert {(f"post:{i}", i) for i in range(total)} == set(rows)
    deliveries = int(db.execute("SELECT SUM(deliveries) FROM store").fetchone()[0])
    commits = int(db.execute("SELECT n FROM commits").fetchone()[0])
    assert wb.pending() == 0
    # Every kill happened with some of the store not yet written, and at least one left a
    # flushed-but-unacknowledged batch that a later worker had to deliver again.
    assert all(count < total for count in killed_at)
    assert deliveries > total
    print(
        f"\nwrite-behind crash test: {total} writes, {kills} SIGKILLs at distinct counts "
        f"{killed_at}; {deliveries} upserts ({deliveries - total} redelivered), "
        f"{commits} commits, {elapsed:.1f}s"
    )
    db.close()
    cache.close()


def test_writes_queued_before_a_key_rotation_are_still_flushed(redis_url: str) -> None:
    old = Cache.from_url(redis_url, namespace="wbrot", secret_key="old-secret")
    old.write_behind("views", flush=lambda items: None).submit("page:1", {"views": 3})
    old.close()
    flushed: list[Any] = []
    new = Cache.from_url(
        redis_url, namespace="wbrot", secret_key="new-secret", secret_key_fallbacks=["old-secret"]
    )
    wb = new.write_behind("views", flush=flushed.extend, interval=0.05, min_idle=0)
    with worker_thread(wb):
        wait_until(lambda: bool(flushed))
    assert flushed == [("page:1", {"views": 3})]
    assert wb.rejected == 0
    new.close()
