"""What the cache owns, and what it only keeps (issue 11, item 1).

Entries are copies of data that lives elsewhere: the cache may drop them wholesale (``clear()``,
or an overflow of the invalidations it could not deliver during an outage). Records
(``cache.records``: sessions) and write-behind streams hold data that exists nowhere else:
they are never dropped wholesale, whatever happens to the data cache, and are deleted one by
one by their owner only (a logout made during the outage included). A record and an entry never
read as each other: separate key spaces, and the MAC covers the full stored key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cachekit_core import Cache, MemoryLayer
from cachekit_core.keys import KeySpace
from cachekit_core.layers._pending import Pending
from cachekit_core.results import ReadStatus
from tests.support.redis_server import RedisServer

redis = pytest.importorskip("redis")

SECRET = "test-secret"
NS = "app"
MISSING = object()


def make(url: str, **options: Any) -> Cache:
    options.setdefault("namespace", NS)
    options.setdefault("secret_key", SECRET)
    return Cache.from_url(url, **options)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {what}")
        time.sleep(0.01)


def wait_listening(cache: Cache) -> None:
    wait_until(lambda: cache.stats()["layers"]["redis"]["listening"], what="listening")


def redis_stats(cache: Cache) -> dict[str, Any]:
    stats: dict[str, Any] = cache.stats()["layers"]["redis"]
    return stats


@pytest.fixture
def caches() -> Iterator[list[Cache]]:
    made: list[Cache] = []
    yield made
    for cache in made:
        cache.close()


# -- 1. an outage, then more lost invalidations than can be tracked ----------------------------


def test_an_overflow_never_deletes_a_record_or_a_stream(
    private_redis: RedisServer, caches: list[Cache]
) -> None:
    """The reproduction of issue 11, item 1, through the engine: sessions, write-behind
    streams, and whatever else lives in the namespace outside the entries survive an outage
    during which more than 10,000 distinct writes failed; stale entries do not."""
    url = private_redis.url
    writer = make(url, l1=False)  # the process that loses track during the outage
    reader = make(url)  # another process, holding entries in its L1
    caches.extend([writer, reader])
    raw = redis.Redis.from_url(url)
    sessions = {f"session:{i}": {"user_id": i} for i in range(50)}
    assert writer.records.write(sessions, ttl=3600) is True
    wb = writer.write_behind("orders", flush=lambda items: None)
    for i in range(5):
        wb.submit(f"order:{i}", {"qty": i})
    assert writer.set("page", "v1", ttl=3600) is True
    assert writer.set("session:7", "an entry, not the session", ttl=3600) is True
    raw.set("elsewhere", b"not ours")
    assert reader.get("page") == "v1"
    wait_listening(reader)  # (subscribing resets L1 once: fill it only after that)
    assert reader.get("page") == "v1"
    stream_key = f"{NS}:s:orders"
    assert raw.xlen(stream_key) == 5

    private_redis.freeze()
    try:
        assert writer.get("probe") is None  # a timeout opens the breaker: the rest is skipped
        assert writer.set("page", "v2", ttl=3600) is False
        assert writer.set("session:7", "changed", ttl=3600) is False  # an entry's key
        for i in range(Pending.LIMIT + 50):  # distinct keys: more than can be tracked
            writer.set(f"search?q={i}", i, ttl=3600)
        assert writer.records.invalidate(["session:3"]) is False  # a logout, during it
        stats = redis_stats(writer)
        # Overflowed: "delete every entry" plus the one logout, kept one by one.
        assert stats["pending_invalidations"] == 2, stats
    finally:
        private_redis.thaw()

    def replayed() -> bool:
        writer.get("unrelated")  # any call replays what is pending, once the breaker allows
        return redis_stats(writer)["pending_invalidations"] == 0

    wait_until(replayed, 5.0, "the writer replays what it could not deliver")

    # Records: every session is there but the one logged out during the outage.
    fresh = make(url, l1=False)
    caches.append(fresh)
    for key, data in sessions.items():
        read = fresh.records.read(key)
        if key == "session:3":
            assert read.status is ReadStatus.MISS
        else:
            assert read.status is ReadStatus.HIT and read.value == data, key
    # Write-behind streams and keys outside the namespace are untouched.
    assert raw.xlen(stream_key) == 5
    assert raw.get("elsewhere") == b"not ours"
    # Stale entries are gone (in Redis, and from the other process's L1).
    assert list(raw.scan_iter(match=f"{NS}:e:*", count=1000)) == []
    assert fresh.get("page") is None
    assert fresh.get("session:7") is None
    wait_until(lambda: reader.get("page") is None, 2.0, "the reader drops its L1 copy")
    # Nothing ever deleted outside entries and the one record.
    assert sorted(k for k in raw.scan_iter(match=f"{NS}:r:*", count=1000)) == sorted(
        KeySpace(NS).record(key).encode() for key in sessions if key != "session:3"
    )
    raw.close()


def test_a_failed_record_write_is_not_replayed_as_a_delete(
    private_redis: RedisServer, caches: list[Cache]
) -> None:
    """A session save that fails during an outage leaves the stored session as it was (an
    entry's failed write is replayed as a delete; a record's would be a logout)."""
    cache = make(private_redis.url)
    caches.append(cache)
    assert cache.records.write({"s": {"cart": 1}}, ttl=3600) is True
    private_redis.freeze()
    try:
        cache.get("probe")
        assert cache.records.write({"s": {"cart": 2}}, ttl=3600) is False
        assert cache.records.read("s").status is ReadStatus.UNAVAILABLE
        assert cache.records.insert("new", 1, ttl=60) is None
        assert cache.records.replace("s", 3, ttl=60) is None
        assert redis_stats(cache)["pending_invalidations"] == 0
    finally:
        private_redis.thaw()
    wait_until(lambda: cache.records.read("s").status is ReadStatus.HIT, 3.0, "Redis back")
    assert cache.records.read("s").value == {"cart": 1}


def test_clear_keeps_records_and_streams(redis_url: str, caches: list[Cache]) -> None:
    cache = make(redis_url)
    other = make(redis_url)
    caches.extend([cache, other])
    raw = redis.Redis.from_url(redis_url)
    assert cache.records.write({"session:1": {"user_id": 1}}, ttl=3600)
    cache.write_behind("orders", flush=lambda items: None).submit("order:1", {"qty": 1})
    cache.set("page", "v1", ttl=3600, tags=["pages"])
    assert other.clear() is True
    assert cache.get("page") is None
    assert cache.records.read("session:1").value == {"user_id": 1}
    assert raw.xlen(f"{NS}:s:orders") == 1
    assert list(raw.scan_iter(match=f"{NS}:e:*")) == []
    raw.close()


def test_a_memory_only_cache_keeps_records_apart_from_its_entries() -> None:
    cache = Cache([MemoryLayer(maxsize=10)], namespace=NS)
    assert cache.records.write({"s": 1}, ttl=60) is True
    for i in range(50):  # entries evicting each other never evict a record
        cache.set(f"k{i}", i, ttl=60)
    cache.set("s", "an entry", ttl=60)
    assert cache.clear() is True
    assert cache.records.read("s").value == 1
    assert cache.get("s") is None
    assert cache.records.insert("s", 2, ttl=60) is False
    assert cache.records.replace("s", 3, ttl=60) is True
    assert cache.records.read("s").value == 3
    assert cache.records.invalidate(["s"]) is True
    assert cache.records.read("s").status is ReadStatus.MISS
    assert cache.records.replace("s", 4, ttl=60) is False  # never resurrected
    assert cache.records.insert("s", 5, ttl=60) is True


# -- 2. records and entries never read as each other -------------------------------------------


def test_a_record_never_reads_as_an_entry_nor_the_reverse(
    redis_url: str, caches: list[Cache]
) -> None:
    cache = make(redis_url, l1=False)
    caches.append(cache)
    raw = redis.Redis.from_url(redis_url)
    assert cache.records.write({"k": {"is_admin": True}}, ttl=3600)
    assert cache.get("k", MISSING) is MISSING  # another key space
    assert cache.set("e", {"is_admin": False}, ttl=3600)
    assert cache.records.read("e").status is ReadStatus.MISS

    # The bytes copied across (a Redis writer's move): the MAC covers the full stored key.
    corrupt = cache.stats()["corrupt"]
    raw.set(f"{NS}:e:k", raw.get(cache.keyspace.record("k")))
    assert cache.get("k", MISSING) is MISSING
    raw.set(cache.keyspace.record("e"), raw.get(f"{NS}:e:e"))
    assert cache.records.read("e").status is ReadStatus.MISS
    assert cache.stats()["corrupt"] == corrupt + 2
    # Positive control: the record itself still reads.
    assert cache.records.read("k").value == {"is_admin": True}
    raw.close()


def test_records_are_never_kept_in_l1(redis_url: str, caches: list[Cache]) -> None:
    """What another process changes or deletes is seen at once, whatever ``local`` says."""
    a, b = make(redis_url), make(redis_url)
    caches.extend([a, b])
    assert a.records.write({"s": 1}, ttl=60)
    assert a.records.read("s", local=True).value == 1
    assert b.records.write({"s": 2}, ttl=60)
    assert a.records.read("s", local=True).value == 2
    assert b.records.invalidate(["s"]) is True
    assert a.records.read("s", local=True).status is ReadStatus.MISS
    assert a.local is not None and len(a.local) == 0


def test_record_answers(redis_url: str, caches: list[Cache]) -> None:
    cache = make(redis_url)
    caches.append(cache)
    records = cache.records
    assert records.insert("s", 1, ttl=60) is True
    assert records.insert("s", 2, ttl=60) is False
    assert records.replace("s", 3, ttl=60) is True
    assert records.replace("absent", 3, ttl=60) is False
    assert records.read("s").value == 3
    assert records.invalidate(["s"]) is True
    assert records.replace("s", 4, ttl=60) is False  # a late save never resurrects it
    assert records.read("s").status is ReadStatus.MISS
    # A record that is not ours (forged, another secret) does not block an insert.
    raw = redis.Redis.from_url(redis_url)
    raw.set(cache.keyspace.record("forged"), b"CK junk")
    assert records.insert("forged", 1, ttl=60) is True
    assert records.read("forged").value == 1
    assert records.write({"gone": 1}, ttl=0) is True  # ttl <= 0 deletes
    assert raw.pttl(cache.keyspace.record("forged")) > 0
    raw.close()


async def test_record_async_twins(redis_url: str) -> None:
    cache = make(redis_url)
    try:
        records = cache.records
        assert await records.ainsert("s", {"a": 1}, ttl=60) is True
        assert await records.ainsert("s", {"a": 2}, ttl=60) is False
        assert (await records.aread("s")).value == {"a": 1}
        assert await records.areplace("s", {"a": 3}, ttl=60) is True
        assert await records.awrite({"t": 1}, ttl=60) is True
        assert await cache.aclear() is True
        assert (await records.aread("s")).value == {"a": 3}
        assert await records.ainvalidate(["s", "t"]) is True
        assert (await records.aread("t")).status is ReadStatus.MISS
    finally:
        await cache.aclose()


# -- 3. the queue itself ------------------------------------------------------------------------


def test_pending_overflow_keeps_record_deletes_one_by_one() -> None:
    pending = Pending()
    assert pending.add(records=["app:r:s1"])
    pending.add(keys={f"app:e:k{i}": f"k{i}" for i in range(Pending.LIMIT + 1)})
    assert pending.clear and not pending.keys and not pending.tags
    assert pending.records == {"app:r:s1"}
    pending.add(keys={"app:e:x": "x"}, tags=["t"])  # nothing more to track: all entries go
    assert len(pending) == 2
    other = Pending()
    other.merge(pending)
    assert other.clear and other.records == {"app:r:s1"}


def test_pending_record_deletes_are_bounded_and_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Pending, "RECORD_LIMIT", 2)
    pending = Pending()
    assert pending.add(records=["a", "b"]) is True
    assert pending.add(records=["b"]) is True  # already queued
    assert pending.add(records=["c"]) is False
    assert pending.records == {"a", "b"} and pending.refused == 1
