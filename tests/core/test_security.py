"""Issue 11 (security hardening), the engine's part: default keys, signatures bound to where
an entry lives, and hostile values a Redis writer can plant in tag versions or tags."""

from __future__ import annotations

import datetime
import enum
import subprocess
import sys
import uuid
from decimal import Decimal
from typing import Any

import pytest
import redis

from cachekit_core import Cache, SerializationError
from cachekit_core.httpcache import HttpCache, Request, Response, ViewOptions

KEY = "security-test-secret"
MISSING = object()


# ---------------------------------------------------------------- @cached default keys (11.2)
class Customer:
    """Like a Django model: its repr names it, and two customers may share a name."""

    def __init__(self, pk: int, name: str) -> None:
        self.pk, self.name = pk, name

    def __repr__(self) -> str:
        return f"<Customer: {self.name}>"


class Plain:
    pass


class Color(enum.Enum):
    RED = 1


@pytest.mark.parametrize("value", [Customer(7, "John Smith"), Plain(), [1, 2], {"a": 1}, {1}])
def test_default_keys_refuse_values_without_a_stable_text(value: Any) -> None:
    cache = Cache()

    @cache.cached(ttl=60)
    def invoices(customer: Any) -> str:
        return "loaded"

    with pytest.raises(TypeError, match=r"parameter 'customer'.*key="):
        invoices(value)
    with pytest.raises(TypeError, match=r"parameter 'customer'"):
        invoices(customer=value)  # the generic (keyword) path too


def test_two_objects_with_one_repr_never_share_an_entry() -> None:
    cache = Cache()

    @cache.cached(ttl=60, key="invoices:{customer.pk}")
    def invoices(customer: Customer) -> str:
        return f"invoices of {customer.pk}"

    assert invoices(Customer(7, "John Smith")) == "invoices of 7"
    assert invoices(Customer(9, "John Smith")) == "invoices of 9"


@pytest.mark.parametrize(
    "value",
    [
        "s",
        7,
        1.5,
        True,
        None,
        b"b",
        Decimal("1.10"),
        uuid.UUID(int=5),
        datetime.date(2026, 1, 2),
        datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.UTC),
        datetime.time(1, 2),
        Color.RED,
        (1, ("a", 2.0)),
        frozenset({"a", "b", "c"}),
    ],
)
def test_default_keys_accept_values_with_a_stable_text(value: Any) -> None:
    cache = Cache()
    calls: list[Any] = []

    @cache.cached(ttl=60)
    def load(v: Any) -> int:
        calls.append(v)
        return len(calls)

    assert load(value) == load(value) == 1
    assert load(v=value) == 1  # the keyword path builds the same key


def test_equal_values_of_different_types_get_different_keys() -> None:
    cache = Cache()

    @cache.cached(ttl=60)
    def load(v: Any) -> str:
        return type(v).__name__

    assert [load(1), load("1"), load(True), load(1.0), load(b"1")] == [
        "int",
        "str",
        "bool",
        "float",
        "bytes",
    ]


def test_a_frozenset_key_is_the_same_in_every_process() -> None:
    program = (
        "from cachekit_core import Cache\n"
        "cache = Cache()\n"
        "@cache.cached(ttl=60)\n"
        "def f(tags): return 1\n"
        "print(f.key(frozenset({'alpha', 'beta', 'gamma', 'delta'})))\n"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", program],
            env={"PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3, 4)
    }
    assert len(keys) == 1, keys


# ---------------------------------------------------- signatures bound to where entries live (11.7)
def test_a_signed_entry_copied_to_another_namespace_does_not_verify(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    tenant_a = Cache.from_url(redis_url, l1=False, namespace="tenant_a", secret_key=KEY)
    tenant_b = Cache.from_url(redis_url, l1=False, namespace="tenant_b", secret_key=KEY)
    try:
        tenant_a.set("profile", {"admin": True}, ttl=60)
        client.set("tenant_b:e:profile", client.get("tenant_a:e:profile") or b"")
        assert tenant_b.get("profile", MISSING) is MISSING
        assert tenant_b.stats()["corrupt"] == 1
        # Under another key of its own namespace it does not verify either.
        client.set("tenant_a:e:other", client.get("tenant_a:e:profile") or b"")
        assert tenant_a.get("other", MISSING) is MISSING
        assert tenant_a.get("profile") == {"admin": True}
    finally:
        tenant_a.close()
        tenant_b.close()


# --------------------------------------------------- hostile tag versions and tags (11.10, 11.11)
def test_a_tag_version_that_is_not_an_integer_is_a_counted_miss(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    cache = Cache.from_url(redis_url, l1=False, namespace="badver", secret_key=KEY)
    try:
        cache.set("page", "v1", ttl=60, tags=["products"])
        assert cache.get("page") == "v1"
        client.set(cache.keyspace.tag("products"), b"not-a-number")
        assert cache.get("page", MISSING) is MISSING  # never an exception, never a hit
        assert cache.stats()["corrupt"] >= 1
        # Writing under the tag while the version is junk stores nothing in Redis.
        assert cache.get_or_set("page", lambda: "v2", ttl=60, tags=["products"]) == "v2"
        assert cache.get("page", MISSING) is MISSING
        cache.invalidate_tags("products")  # a bump turns the junk back into a version
        assert cache.get_or_set("page", lambda: "v3", ttl=60, tags=["products"]) == "v3"
        assert cache.get("page") == "v3"
    finally:
        cache.close()


async def test_a_bad_tag_version_is_a_miss_on_the_async_path_too(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    cache = Cache.from_url(redis_url, l1=False, namespace="badver_a", secret_key=KEY)
    try:
        await cache.aset("page", "v1", ttl=60, tags=["products"])
        client.set(cache.keyspace.tag("products"), b"1.5e3")
        assert await cache.aget("page", MISSING) is MISSING
        assert cache.stats()["corrupt"] >= 1
    finally:
        await cache.aclose()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", None], ids=["redis-down", "memory"])
def test_too_many_tags_are_refused_at_set(url: str | None) -> None:
    cache = Cache() if url is None else Cache.from_url(url, namespace="many", secret_key=KEY)
    tags = [f"row:{i:08d}" for i in range(5000)]  # ~ 100 KiB of tag keys
    with pytest.raises(SerializationError, match=r"tag keys take more than .* 65535 bytes"):
        cache.set("page", "v", ttl=60, tags=tags)
    cache.close()


async def test_too_many_tags_never_fail_a_page(redis_url: str) -> None:
    cache = Cache.from_url(redis_url, namespace="manypage", secret_key=KEY)
    http = HttpCache(cache)
    view = ViewOptions(ttl=60, tags=tuple(f"row:{i:08d}" for i in range(5000)))
    request = Request("GET", "http", "example.com", "/rows", "", [])
    try:
        lookup = await http.alookup(request, view)
        response = await http.astore(lookup, Response(200, [("Content-Type", "text/plain")], b"ok"))
        assert response.status == 200 and response.body == b"ok"
        again = await http.alookup(request, view)
        assert again.response is None  # served, not stored
    finally:
        await cache.aclose()


# ------------------------------------------------------------- counters across processes (11.2b)
_COUNTER_WORKER = """
import sys, threading
from cachekit_core import Cache
url, n = sys.argv[1], int(sys.argv[2])
cache = Cache.from_url(url, namespace="ctr", secret_key="security-test-secret", lock_wait=30)
seen, lock = [], threading.Lock()
def work():
    for _ in range(n):
        value = cache.incr("hits")
        with lock:
            seen.append(value)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(" ".join(map(str, seen)))
cache.close()
"""


@pytest.mark.slow
def test_incr_is_exact_across_processes_whatever_l1_holds(redis_url: str) -> None:
    """4 processes x 4 threads, each with an L1 that has seen the counter: no update is lost
    and a limit of 300 admits exactly 300 calls (django-ratelimit's pattern)."""
    cache = Cache.from_url(redis_url, namespace="ctr", secret_key=KEY)
    cache.set("hits", 0, ttl=300)
    assert cache.get("hits") == 0  # this process's L1 now holds a copy that will go stale
    per_thread = 50
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _COUNTER_WORKER, redis_url, str(per_thread)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    values: list[int] = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        values += [int(v) for v in out.split()]
    total = 4 * 4 * per_thread
    assert sorted(values) == list(range(1, total + 1))  # every increment seen exactly once
    assert sum(1 for v in values if v <= 300) == 300
    assert cache.incr("hits", 0) == total  # and this process, whose L1 copy said 0, agrees
    cache.close()


def test_incr_fails_loudly_when_redis_is_down() -> None:
    from cachekit_core import CacheUnavailable

    cache = Cache.from_url("redis://127.0.0.1:1/0", namespace="ctr2", secret_key=KEY)
    with pytest.raises(CacheUnavailable):
        cache.incr("hits")
    cache.close()


# ------------------------------------------- a save never resurrects a deleted value (11.4)
@pytest.mark.parametrize("where", ["memory", "redis"])
async def test_replace_stores_only_what_still_exists(where: str, redis_url: str) -> None:
    if where == "memory":
        cache = Cache()
    else:
        cache = Cache.from_url(redis_url, namespace=f"repl_{where}", secret_key=KEY)
    try:
        assert await cache.areplace("session:1", {"user": 7}, ttl=60) is False
        assert await cache.aget("session:1") is None
        await cache.aset("session:1", {"user": 7}, ttl=60)
        assert cache.replace("session:1", {"user": 7, "cart": [1]}, ttl=60) is True
        assert await cache.aget("session:1") == {"user": 7, "cart": [1]}
        await cache.adelete("session:1")  # a logout lands while a request is in flight...
        assert await cache.areplace("session:1", {"user": 7, "cart": [2]}, ttl=60) is False
        assert await cache.aget("session:1") is None  # ...and its late save brings nothing back
    finally:
        await cache.aclose()


async def test_replace_says_when_redis_is_down() -> None:
    cache = Cache.from_url("redis://127.0.0.1:1/0", namespace="repl_down", secret_key=KEY)
    assert await cache.areplace("session:1", {"user": 7}, ttl=60) is None
    await cache.aclose()
