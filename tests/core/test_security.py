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
