"""CachekitCache beyond Django's own suite: signing, outages, the async path, configuration."""

from __future__ import annotations

import inspect
import math
import pickle
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache

from cachekit_core import Cache, CacheUnavailable, ReadStatus, RedisLayer
from cachekit_core.entry import FLAG_SIGNED, HEADER, Codec, Entry
from cachekit_core.keys import KeySpace
from cachekit_core.serializers import MsgpackSerializer, PickleSerializer
from cachekit_django import conf
from cachekit_django.cache import CachekitCache
from tests.support.redis_server import RedisServer

EXECUTED: list[str] = []


def _pwn(tag: str) -> None:
    EXECUTED.append(tag)


class Evil:
    """Runs ``_pwn`` when unpickled: the payload of every forged entry below."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_pwn, ("pwned",))


def make(location: str = "", **options: Any) -> CachekitCache:
    return CachekitCache(location, {"OPTIONS": options} if options else {})


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def entry_key(cache: CachekitCache, key: str) -> str:
    return KeySpace(cache.spec.namespace).entry(cache.make_key(key))


# -- signed pickles ----------------------------------------------------------------------------
def test_payloads_in_redis_are_signed_with_a_key_derived_from_secret_key(
    redis_url: str, client: redis.Redis
) -> None:
    cache = make(redis_url)
    cache.set("k", {"a": [1, 2]})
    blob = client.get(entry_key(cache, "k"))
    assert isinstance(blob, bytes)
    _, _, flags, _ = HEADER.unpack_from(blob)
    assert flags & FLAG_SIGNED
    # An engine given the key derived from SECRET_KEY reads it; one given SECRET_KEY itself
    # (what a leaked settings file would hand an attacker) finds a forgery.
    made, namespace = cache.make_key("k"), cache.spec.namespace
    with Cache(
        [RedisLayer(redis_url)], namespace=namespace, secret_key=conf.signing_key("cache")
    ) as right:
        assert pickle.loads(right.get(made)) == {"a": [1, 2]}
    with Cache([RedisLayer(redis_url)], namespace=namespace, secret_key=settings.SECRET_KEY) as raw:
        assert raw.get(made) is None and raw.counters.corrupt == 1


def test_forged_pickles_in_redis_never_execute(redis_url: str, client: redis.Redis) -> None:
    evil = pickle.dumps(Evil())
    pickle.loads(evil)  # the payload is armed: loading it runs code
    assert EXECUTED == ["pwned"]
    EXECUTED.clear()
    cache = make(redis_url)
    cache.set("genuine", "value")
    genuine = client.get(entry_key(cache, "genuine"))
    assert isinstance(genuine, bytes)
    entry = Entry(evil, math.inf, math.inf)
    secret = settings.SECRET_KEY.encode()

    def signed(codec: Codec, name: str, value: Entry = entry) -> bytes:
        return codec.encode(value, [], cache.make_key(name))  # the MAC covers the key too

    # Signed envelopes are signed for the key they are stored under: only the secret is wrong.
    forgeries = {
        "raw-pickle": evil,
        "unsigned-envelope": Codec(MsgpackSerializer()).encode(entry, []),
        "signed-with-SECRET_KEY-itself": signed(
            Codec(MsgpackSerializer(), secret), "signed-with-SECRET_KEY-itself"
        ),
        "pickle-serializer-wrong-key": signed(
            Codec(PickleSerializer(), b"k" * 32),
            "pickle-serializer-wrong-key",
            Entry(Evil(), math.inf, math.inf),
        ),
        "genuine-entry-tampered": genuine[:-1] + bytes([genuine[-1] ^ 1]),
        "genuine-entry-copied-under-another-key": genuine,
    }
    for name, blob in forgeries.items():
        client.set(entry_key(cache, name), blob)
    for name in forgeries:
        assert cache.get(name, "miss") == "miss", name
        assert cache.has_key(name) is False, name
    assert cache.get_many(list(forgeries)) == {}
    assert EXECUTED == []
    assert cache.engine.stats()["corrupt"] >= len(forgeries)


def test_values_are_isolated_from_mutation_in_l1(redis_url: str) -> None:
    cache = make(redis_url)
    cache.set("list", [1, 2])
    first = cache.get("list")
    first.append(3)
    assert cache.get("list") == [1, 2]
    assert cache.get("list") is not cache.get("list")


# -- timeouts -----------------------------------------------------------------------------------
def test_timeouts_map_to_redis_expiry(redis_url: str, client: redis.Redis) -> None:
    cache = CachekitCache(redis_url, {"TIMEOUT": 5})
    cache.set("forever", 1, timeout=None)
    cache.set("ten", 1, timeout=10)
    cache.set("default", 1)
    assert client.pttl(entry_key(cache, "forever")) == -1
    assert 9_000 < client.pttl(entry_key(cache, "ten")) <= 10_000
    assert 4_000 < client.pttl(entry_key(cache, "default")) <= 5_000
    cache.set("ten", 2, timeout=0)  # 0 expires at once: the old value goes too
    assert cache.get("ten") is None
    assert client.exists(entry_key(cache, "ten")) == 0
    assert cache.add("gone", 1, timeout=-1) is True  # stored and expired, as Django's backends
    assert cache.has_key("gone") is False


def test_incr_is_atomic_across_threads(redis_url: str) -> None:
    cache = make(redis_url)
    cache.set("n", 0)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: cache.incr("n"), range(40)))
    assert cache.get("n") == 40
    assert make(redis_url, L1=False).get("n") == 40


def test_get_or_set_calls_the_default_once_under_concurrency(redis_url: str) -> None:
    cache = make(redis_url)
    calls: list[int] = []

    def slow() -> str:
        calls.append(1)
        time.sleep(0.2)
        return "value"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: cache.get_or_set("slow", slow), range(8)))
    assert results == ["value"] * 8
    assert len(calls) == 1


def test_clear_touches_only_its_namespace(redis_url: str, client: redis.Redis) -> None:
    cache = make(redis_url)
    cache.set("mine", 1)
    client.set("someone-else:key", b"kept")
    cache.clear()
    assert cache.get("mine") is None
    assert client.get("someone-else:key") == b"kept"


# -- Redis outages ------------------------------------------------------------------------------
def test_killed_redis_never_raises_and_recovers(private_redis: RedisServer) -> None:
    cache = make(private_redis.url, SOCKET_TIMEOUT=0.2, BREAKER_COOLDOWN=0.2)
    cache.set("kept", "in L1")
    cache.set("n", 1)
    private_redis.stop()
    assert cache.get("kept") == "in L1"  # L1 still serves what it holds
    assert cache.get("missing", "default") == "default"
    cache.set("a", 1)
    assert cache.add("b", 2) in (True, False)
    assert cache.delete("a") in (True, False)
    assert cache.set_many({"c": 3, "d": 4}) in ([], ["c", "d"])
    cache.get_many(["c", "d"])
    cache.delete_many(["c", "d"])
    cache.has_key("kept")
    cache.touch("kept", 10)
    with pytest.raises(CacheUnavailable):
        cache.incr("n")  # a counter that failed open would admit what it exists to limit
    assert cache.get_or_set("loaded", lambda: "fresh") == "fresh"
    cache.clear()
    private_redis.start()
    deadline = time.monotonic() + 5
    probe = make(private_redis.url, L1=False)
    while probe.get("after") != "stored" and time.monotonic() < deadline:
        cache.set("after", "stored")
        time.sleep(0.05)
    assert probe.get("after") == "stored"


def test_frozen_redis_costs_at_most_a_timeout(private_redis: RedisServer) -> None:
    cache = make(private_redis.url, SOCKET_TIMEOUT=0.2)
    cache.set("warm", 1)  # the connection exists before the freeze
    private_redis.freeze()
    try:
        started = time.monotonic()
        assert cache.get("missing") is None
        cache.set("x", 1)
        assert cache.get("other") is None
        assert time.monotonic() - started < 2.0
    finally:
        private_redis.thaw()


# -- the engine's answers: what a caller that must tell "missing" from "unreachable" uses -------
def test_answers_say_hit_miss_and_whether_redis_was_reached(private_redis: RedisServer) -> None:
    cache = make(private_redis.url, SOCKET_TIMEOUT=0.2, BREAKER_COOLDOWN=0.2)
    assert cache.read("k") == (ReadStatus.MISS, None)
    assert cache.insert("k", {"v": 1}) is True
    assert cache.insert("k", "other") is False  # taken
    assert cache.insert("gone", "x", timeout=0) is True  # stores nothing, as add() says
    assert cache.insert("k", "x", timeout=0) is False
    assert cache.read("k") == (ReadStatus.HIT, {"v": 1})
    assert cache.write("k", {"v": 2}) is True
    assert cache.get("k") == {"v": 2}  # the same keys and values as Django's API
    cache.set("n", 7, version=3)
    assert cache.read("n", version=3) == (ReadStatus.HIT, 7)
    # Another process deletes the entry: Redis is asked past this process's copy at once.
    client = redis.Redis.from_url(private_redis.url)
    client.delete(entry_key(cache, "k"))
    client.close()
    assert cache.read("k", local=False) == (ReadStatus.MISS, None)
    assert cache.invalidate(["n"], version=3) is True
    assert cache.read("n", version=3) == (ReadStatus.MISS, None)
    cache.set("held", 1)
    private_redis.stop()
    assert cache.read("held") == (ReadStatus.HIT, 1)  # the fresh L1 copy: Redis not asked
    assert cache.read("held", local=False) == (ReadStatus.UNAVAILABLE, None)
    assert cache.read("other") == (ReadStatus.UNAVAILABLE, None)
    assert cache.write("k", 3) is False
    assert cache.insert("new", 1) is None  # taken or not: unknown
    assert cache.invalidate(["held"]) is False


def test_answers_of_an_in_process_cache() -> None:
    cache = make()
    assert cache.insert("k", 1) is True
    assert cache.insert("k", 2) is False
    assert cache.read("k", local=False) == (ReadStatus.HIT, 1)  # the memory layer is the store
    assert cache.write("k", 2) is True
    assert cache.invalidate(["k"]) is True
    assert cache.read("k") == (ReadStatus.MISS, None)


async def test_async_answers(private_redis: RedisServer, aclose_engines: None) -> None:
    cache = make(private_redis.url, SOCKET_TIMEOUT=0.2, BREAKER_COOLDOWN=0.2)
    assert await cache.aread("k") == (ReadStatus.MISS, None)
    assert await cache.ainsert("k", [1]) is True
    assert await cache.ainsert("k", [2]) is False
    assert await cache.awrite("k", [3]) is True
    assert await cache.aread("k", local=False) == (ReadStatus.HIT, [3])
    assert await cache.ainvalidate(["k"]) is True
    assert await cache.aread("k") == (ReadStatus.MISS, None)
    private_redis.stop()
    assert await cache.aread("k") == (ReadStatus.UNAVAILABLE, None)
    assert await cache.awrite("k", 1) is False
    assert await cache.ainsert("k2", 1) is None
    assert await cache.ainvalidate(["k"]) is False


# -- async: the engine's coroutines, in the caller's event loop ---------------------------------
def test_no_async_method_falls_back_to_sync_to_async() -> None:
    hopping = [
        name
        for name, method in vars(BaseCache).items()
        if inspect.iscoroutinefunction(method) and "sync_to_async" in inspect.getsource(method)
    ]
    assert hopping  # BaseCache still has them: each one must be overridden
    inherited = [n for n in hopping if getattr(CachekitCache, n) is getattr(BaseCache, n)]
    assert inherited == []


THREADS: list[tuple[str, int]] = []


def _probe_loaded() -> Probe:
    THREADS.append(("load", threading.get_ident()))
    return Probe()


class Probe:
    """Records the thread it is pickled and unpickled in."""

    def __reduce__(self) -> tuple[Any, ...]:
        THREADS.append(("dump", threading.get_ident()))
        return (_probe_loaded, ())


async def test_async_methods_run_in_the_event_loop_thread(
    redis_caches: str, aclose_engines: None
) -> None:
    cache = caches["default"]
    assert isinstance(cache, CachekitCache)
    loop_thread = threading.get_ident()
    THREADS.clear()
    await cache.aset("p", Probe())
    assert isinstance(await cache.aget("p"), Probe)
    assert await cache.aadd("q", Probe()) is True
    assert await cache.aset_many({"r": Probe()}) == []
    assert set(await cache.aget_many(["p", "r", "none"])) == {"p", "r"}
    assert isinstance(await cache.aget_or_set("s", Probe), Probe)
    assert {kind for kind, _ in THREADS} == {"dump", "load"}
    assert {thread for _, thread in THREADS} == {loop_thread}
    # And the engine did its Redis I/O on its asyncio client: no sync client was ever made.
    shared = cache.engine.layers[-1]
    assert isinstance(shared, RedisLayer)
    assert not shared.clients.sync_open


async def test_async_api_semantics(redis_caches: str, aclose_engines: None) -> None:
    cache = caches["default"]
    assert isinstance(cache, CachekitCache)
    assert await cache.aget("nope", "default") == "default"
    await cache.aset("k", {"v": 1}, timeout=None)
    assert await cache.aget("k") == {"v": 1}
    assert await cache.aadd("k", "other") is False
    assert await cache.ahas_key("k") is True
    assert await cache.atouch("k", 30) is True
    assert await cache.atouch("absent") is False
    await cache.aset("n", 41)
    assert await cache.aincr("n") == 42
    assert await cache.adecr("n", 2) == 40
    with pytest.raises(ValueError, match="'absent' not found"):
        await cache.aincr("absent")
    await cache.aset("none", None)
    with pytest.raises(TypeError):
        await cache.aincr("none")
    assert await cache.aset_many({"a": 1, "b": 2}, timeout=0) == []
    assert await cache.aget_many(["a", "b"]) == {}
    assert await cache.aset_many({"a": 1, "b": 2}) == []
    assert await cache.aget_many(iter(["a", "b", "c"])) == {"a": 1, "b": 2}
    await cache.adelete_many(["a"])
    assert await cache.aget_many(["a", "b"]) == {"b": 2}
    assert await cache.aget_or_set("gos", lambda: "made") == "made"
    assert await cache.aget_or_set("gos", "ignored") == "made"
    assert await cache.aincr_version("gos") == 2
    assert await cache.aget("gos", version=2) == "made"
    assert await cache.adelete("gos", version=2) is True
    assert await cache.adelete("gos", version=2) is False
    await cache.aclear()
    assert await cache.aget("k") is None
    await cache.aclose()
