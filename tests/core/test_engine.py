"""Engine behaviour: layering, TTL, stale-while-revalidate, stale-if-error, early refresh,
negative caching and the decorator — on memory-only, L1+Redis and Redis-only caches."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from cachekit_core import Cache, ConfigurationError, MemoryLayer, RedisLayer


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "l1+redis", "redis", "l1+cluster"])
def cache(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Cache]:
    if request.param == "memory":
        built = Cache(namespace="eng", clock=clock)
    else:
        url = request.getfixturevalue("cluster_url" if "cluster" in request.param else "redis_url")
        built = Cache.from_url(
            url,
            namespace="eng",
            l1=request.param.startswith("l1"),
            clock=clock,
            secret_key="test-secret",
        )
    yield built
    built.close()


def wait_until(predicate: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def test_basic_operations(cache: Cache) -> None:
    assert cache.get("missing", default="d") == "d"
    assert cache.set("a", {"x": [1, 2]}, ttl=60)
    assert cache.get("a") == {"x": [1, 2]}
    cache.set_many({"b": 2, "c": 3})
    assert cache.get_many(["a", "b", "c", "z"]) == {"a": {"x": [1, 2]}, "b": 2, "c": 3}
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    assert cache.delete_many(["b", "c", "z"]) == 2
    assert cache.get_many(["b", "c"]) == {}
    assert cache.add("n", 1) is True
    assert cache.add("n", 2) is False
    assert cache.get("n") == 1


def test_ttl_expiry_follows_the_clock(cache: Cache, clock: FakeClock) -> None:
    cache.set("k", "v", ttl=10)
    clock.advance(9.9)
    assert cache.get("k") == "v"
    clock.advance(0.2)
    assert cache.get("k") is None


def test_zero_ttl_deletes(cache: Cache) -> None:
    cache.set("k", "v")
    cache.set("k", "w", ttl=0)
    assert cache.get("k") is None


def test_tags_invalidate_every_layer(cache: Cache) -> None:
    cache.set("p1", "one", tags=["product:1", "products"])
    cache.set("p2", "two", tags=["product:2", "products"])
    cache.invalidate_tags("product:1")
    assert cache.get("p1") is None
    assert cache.get("p2") == "two"
    cache.invalidate_tags(["products"])
    assert cache.get("p2") is None


def test_clear_empties_the_namespace(cache: Cache) -> None:
    cache.set("a", 1)
    cache.clear()
    assert cache.get("a") is None


def test_stale_while_revalidate_serves_stale_and_refreshes_once(
    cache: Cache, clock: FakeClock
) -> None:
    calls = []
    release = threading.Event()

    def loader() -> int:
        calls.append(1)
        if len(calls) > 1:
            release.wait(5)
        return len(calls)

    assert cache.get_or_set("k", loader, ttl=10, stale_ttl=30) == 1
    clock.advance(11)
    # Expired but within the stale window: old value at once, one refresh in the background.
    assert [cache.get_or_set("k", loader, ttl=10, stale_ttl=30) for _ in range(5)] == [1] * 5
    release.set()
    wait_until(lambda: cache.get_or_set("k", loader, ttl=10, stale_ttl=30) == 2)
    # The refresh stores its value before it leaves its flight; a caller arriving in between
    # joins the flight and shares its value, which the fake clock below would make look stale.
    wait_until(lambda: "k" not in cache._flights)
    assert len(calls) == 2
    assert cache.stats()["stale_serves"] >= 5
    clock.advance(45)  # past the stale window: a plain miss, loaded in the foreground
    assert cache.get_or_set("k", loader, ttl=10, stale_ttl=30) == 3


def test_stale_if_error_keeps_serving_when_the_refresh_fails(
    cache: Cache, clock: FakeClock
) -> None:
    def failing() -> str:
        raise RuntimeError("db down")

    cache.get_or_set("k", lambda: "old", ttl=10, stale_ttl=60)
    clock.advance(15)
    assert cache.get_or_set("k", failing, ttl=10, stale_ttl=60) == "old"
    wait_until(lambda: cache.stats()["loader_errors"] == 1)
    assert cache.get_or_set("k", failing, ttl=10, stale_ttl=60) == "old"


def test_plain_get_never_returns_stale(cache: Cache, clock: FakeClock) -> None:
    cache.get_or_set("k", lambda: "v", ttl=10, stale_ttl=60)
    clock.advance(11)
    assert cache.get("k") is None


def test_negative_caching(cache: Cache, clock: FakeClock) -> None:
    calls = []

    def missing_row() -> None:
        calls.append(1)

    assert cache.get_or_set("user:404", missing_row, negative_ttl=5) is None
    assert cache.get_or_set("user:404", missing_row, negative_ttl=5) is None
    assert len(calls) == 1
    clock.advance(6)
    cache.get_or_set("user:404", missing_row, negative_ttl=5)
    assert len(calls) == 2
    # Without negative_ttl, None is not cached: every call reaches the loader.
    cache.get_or_set("other", missing_row)
    cache.get_or_set("other", missing_row)
    assert len(calls) == 4


def test_early_refresh_recomputes_before_expiry(cache: Cache, clock: FakeClock) -> None:
    calls = []

    def slow() -> int:
        calls.append(1)
        time.sleep(0.05)
        return len(calls)

    cache.get_or_set("k", slow, ttl=10, early_refresh=1.0)
    clock.advance(9.99)  # 10 ms left, loader takes 50 ms: XFetch refreshes early
    # Each call triggers with probability ~0.8; twenty calls make a miss impossible in practice,
    # and single-flight keeps them to one refresh.
    for _ in range(20):
        assert cache.get_or_set("k", slow, ttl=10, early_refresh=1.0) in (1, 2)
    wait_until(lambda: len(calls) == 2)
    assert cache.stats()["early_refreshes"] >= 1


async def test_async_twins(cache: Cache, clock: FakeClock) -> None:
    assert await cache.aset("a", 1, tags=["t"])
    assert await cache.aget("a") == 1
    await cache.aset_many({"b": 2})
    assert await cache.aget_many(["a", "b"]) == {"a": 1, "b": 2}
    assert await cache.aadd("a", 9) is False
    await cache.ainvalidate_tags("t")
    assert await cache.aget("a") is None
    assert await cache.adelete("b") is True
    assert await cache.adelete_many(["b"]) == 0

    async def loader() -> str:
        return "async"

    assert await cache.aget_or_set("c", loader) == "async"
    assert await cache.aget_or_set("d", lambda: "sync loader") == "sync loader"
    await cache.aclear()
    assert await cache.aget("c") is None
    await cache.aclose()


async def test_async_stale_while_revalidate(cache: Cache, clock: FakeClock) -> None:
    calls = []

    async def loader() -> int:
        calls.append(1)
        return len(calls)

    await cache.aget_or_set("k", loader, ttl=10, stale_ttl=30)
    clock.advance(11)
    assert await cache.aget_or_set("k", loader, ttl=10, stale_ttl=30) == 1
    for _ in range(100):
        await asyncio.sleep(0.01)
        if await cache.aget_or_set("k", loader, ttl=10, stale_ttl=30) == 2:
            break
    assert len(calls) == 2
    await cache.aclose()


def test_decorator_keys_tags_and_invalidate(cache: Cache) -> None:
    calls = []

    @cache.cached(ttl=60, key="user:{user_id}", tags=["user:{user_id}"])
    def load_user(user_id: int, verbose: bool = False) -> dict[str, int]:
        calls.append(user_id)
        return {"id": user_id}

    assert load_user(1) == {"id": 1}
    assert load_user(user_id=1) == {"id": 1}
    assert load_user(1, verbose=True) == {"id": 1}  # same key: verbose is not in the template
    assert calls == [1]
    assert load_user.key(1) == "user:1"
    assert load_user.invalidate(user_id=1) is True
    load_user(1)
    cache.invalidate_tags("user:1")
    load_user(1)
    assert calls == [1, 1, 1]


def test_decorator_default_key_and_callable_tags(cache: Cache) -> None:
    calls = []

    @cache.cached(tags=lambda a: [f"a:{a}"])
    def add(a: int, b: int) -> int:
        calls.append((a, b))
        return a + b

    assert add(1, 2) == 3 and add(1, 2) == 3 and add(2, 1) == 3
    assert calls == [(1, 2), (2, 1)]
    cache.invalidate_tags("a:1")
    add(1, 2)
    assert calls == [(1, 2), (2, 1), (1, 2)]


async def test_decorator_on_async_functions(cache: Cache) -> None:
    calls = []

    @cache.cached(ttl=60, key="item:{pk}")
    async def load(pk: int) -> str:
        calls.append(pk)
        return f"item {pk}"

    assert await load(3) == "item 3"
    assert await load(3) == "item 3"
    assert calls == [3]
    assert await load.ainvalidate(pk=3) is True
    assert await load(pk=3) == "item 3"
    assert calls == [3, 3]
    await cache.aclose()


def test_decorator_rejects_templates_naming_unknown_parameters() -> None:
    cache = Cache()
    with pytest.raises(ConfigurationError, match="user_id"):

        @cache.cached(key="user:{user_id}")
        def load(pk: int) -> int:
            return pk


def test_an_l2_hit_fills_l1_for_at_most_the_l1_ttl(redis_url: str, clock: FakeClock) -> None:
    layers = [MemoryLayer(100, ttl=5), RedisLayer(redis_url)]
    reader = Cache(layers, namespace="fill", clock=clock, secret_key="test-secret")
    writer = Cache.from_url(
        redis_url, namespace="fill", l1=False, clock=clock, secret_key="test-secret"
    )
    writer.set("k", "v1", ttl=60)
    assert reader.get("k") == "v1"
    assert reader.stats()["layers"]["redis"]["hits"] == 1
    assert reader.get("k") == "v1"
    assert reader.stats()["layers"]["memory"]["hits"] == 1
    clock.advance(6)  # past the L1 trust window: back to Redis
    assert reader.get("k") == "v1"
    assert reader.stats()["layers"]["redis"]["hits"] == 2
    reader.close()
    writer.close()


def test_a_write_in_one_cache_drops_other_caches_l1_copies(redis_url: str) -> None:
    a = Cache.from_url(redis_url, namespace="coherent", secret_key="test-secret")
    b = Cache.from_url(redis_url, namespace="coherent", secret_key="test-secret")
    a.set("k", "v1")
    assert b.get("k") == "v1"
    wait_until(lambda: b.stats()["layers"]["redis"]["listening"])
    b.get("k")  # refill after the listener's initial reset
    a.set("k", "v2")
    wait_until(lambda: b.get("k") == "v2", timeout=1)
    a.delete("k")
    wait_until(lambda: b.get("k") is None, timeout=1)
    a.close()
    b.close()


def test_memory_layer_bounds_entries_and_bytes() -> None:
    by_count = Cache([MemoryLayer(maxsize=3)])
    for i in range(10):
        by_count.set(f"k{i}", i)
    assert len(by_count.local or []) == 3
    assert by_count.get("k9") == 9 and by_count.get("k0") is None

    by_bytes = Cache([MemoryLayer(maxsize=1000, max_bytes=10_000)])
    for i in range(50):
        by_bytes.set(f"k{i}", "x" * 1000)
    local = by_bytes.local
    assert local is not None and local.currsize <= 10_000 and len(local) < 50
    by_bytes.set("huge", "x" * 50_000)  # bigger than the whole layer: simply not kept
    assert by_bytes.get("huge") is None


@pytest.mark.parametrize("policy", ["lru", "lfu", "fifo", "rr"])
def test_memory_layer_eviction_policy_is_pluggable(policy: str) -> None:
    cache = Cache([MemoryLayer(maxsize=2, policy=policy)])
    for key in "abc":
        cache.set(key, key)
    assert len(cache.local or []) == 2


def test_memory_layer_ttl_caps_entries_in_a_memory_only_cache(clock: FakeClock) -> None:
    cache = Cache([MemoryLayer(ttl=5)], clock=clock)
    cache.set("k", "v", ttl=60)
    clock.advance(6)
    assert cache.get("k") is None


def test_jitter_spreads_ttls(clock: FakeClock) -> None:
    cache = Cache(jitter=0.1, clock=clock)
    for i in range(200):
        cache.set(f"k{i}", i, ttl=100)
    clock.advance(95)
    alive = sum(cache.get(f"k{i}") is not None for i in range(200))
    assert 0 < alive < 200


@pytest.mark.parametrize(
    "kwargs",
    [{"namespace": "bad space"}, {"namespace": ""}, {"serializer": "yaml"},
     {"serializer": "pickle"}, {"jitter": 1.5}, {"layers": []}],
)  # fmt: skip
def test_configuration_errors_are_clear(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Cache(**kwargs)  # type: ignore[arg-type]


def test_public_api_is_complete_and_sorted() -> None:
    import cachekit_core

    assert cachekit_core.__all__ == sorted(cachekit_core.__all__)
    public = {n for n in dir(cachekit_core) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(cachekit_core.__all__)


def test_has_key_touch_and_atomic_incr(cache: Cache, clock: FakeClock) -> None:
    cache.set("n", 1, ttl=10)
    assert cache.has_key("n") and not cache.has_key("absent")
    threads = [
        threading.Thread(target=lambda: [cache.incr("n") for _ in range(50)]) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("n") == 201
    assert cache.incr("n", -1) == 200
    with pytest.raises(ValueError, match="not found"):
        cache.incr("absent")
    cache.set("s", "text")
    with pytest.raises(TypeError):
        cache.incr("s")
    assert cache.touch("n", 100)
    clock.advance(50)
    assert cache.get("n") == 200
    assert not cache.touch("absent")


def test_generated_wrappers_keep_signature_defaults_and_keys() -> None:
    cache = Cache()
    calls: list[tuple[int, int]] = []

    @cache.cached(key="x:{b}:{a}")
    def mul(a: int, b: int = 5) -> int:
        calls.append((a, b))
        return a * b

    @cache.cached()
    def add(a: int, b: int = 2) -> int:
        return a + b

    @cache.cached()
    def constant() -> int:
        return 42

    assert mul(2) == mul(2, b=5) == mul(a=2) == 10
    assert calls == [(2, 5)]
    assert mul.key(2) == "x:5:2"
    assert add(1) == 3 and add(1, 3) == 4 and add.key(1) == f"{__name__}.{add.__qualname__}:(1, 2)"
    assert constant() == constant() == 42
    with pytest.raises(TypeError):
        mul()  # type: ignore[call-arg]
    import inspect

    assert inspect.signature(mul) == inspect.signature(mul.__wrapped__)
    assert list(inspect.signature(mul).parameters) == ["a", "b"]


def test_a_sync_call_refuses_an_async_loader_instead_of_caching_a_coroutine() -> None:
    cache = Cache()

    async def loader() -> int:
        return 1

    with pytest.raises(TypeError, match="async loader"):
        cache.get_or_set("k", loader)
    assert cache.get("k") is None
    assert cache.get_or_set("k", lambda: 2) == 2
