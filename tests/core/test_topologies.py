"""Redis Cluster and Sentinel: URL parsing, and the engine's multi-key paths (tags, get_many,
locks, L1 invalidation, clear, write-behind) on a real 3-master cluster and a real Sentinel
failover. The whole engine suite also runs on the cluster (test_engine.py, "l1+cluster")."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import redis
import redis.cluster

from cachekit_core import Cache, ConfigurationError, RedisLayer
from cachekit_core.layers.topology import Topology
from tests.support.redis_topologies import RedisClusterNodes, RedisSentinelSet


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> float:
    """Seconds it took for ``predicate`` to hold."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


# -- URLs --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "kwargs", "kind"),
    [
        ("redis://127.0.0.1:6379/0", {}, "standalone"),
        ("rediss://127.0.0.1:6379/0", {}, "standalone"),
        ("unix:///tmp/redis.sock", {}, "standalone"),
        ("redis+cluster://127.0.0.1:7000", {}, "cluster"),
        ("rediss+cluster://u:p@127.0.0.1:7000/0", {}, "cluster"),
        ("redis://127.0.0.1:7000", {"cluster": True}, "cluster"),
        ("redis+sentinel://127.0.0.1:26379/mymaster", {}, "sentinel"),
        ("REDIS+SENTINEL://a:26379,b:26380/mymaster/2", {}, "sentinel"),
    ],
)
def test_url_names_the_topology(url: str, kwargs: dict[str, Any], kind: str) -> None:
    assert Topology.parse(url, **kwargs).kind == kind
    assert RedisLayer(url, **kwargs).cluster is (kind == "cluster")  # no I/O at construction


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("memcached://127.0.0.1:11211", {}, "unsupported URL scheme"),
        ("redis+sharded://127.0.0.1", {}, "unsupported URL scheme"),
        ("127.0.0.1:6379", {}, "unsupported URL scheme"),
        ("redis+cluster://127.0.0.1:7000/3", {}, "only database 0"),
        ("unix:///tmp/r.sock", {"cluster": True}, "host:port"),
        ("redis+sentinel://127.0.0.1:26379", {}, "service"),
        ("redis+sentinel://127.0.0.1/mymaster", {}, "host:port"),
        ("redis+sentinel://127.0.0.1:1/mymaster/x", {}, "service"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisLayer(url, **kwargs)


def test_sentinel_url_parts_and_redaction() -> None:
    topology = Topology.parse("rediss+sentinel://app:s%40cret@[::1]:26379,h2:26380/shop%2Fm/3")
    assert topology.sentinels == (("::1", 26379), ("h2", 26380))
    assert topology.service == "shop/m"
    assert topology.master_options == {
        "db": 3,
        "username": "app",
        "password": "s@cret",
        "ssl": True,
    }
    assert "cret" not in topology.safe_url
    assert "cret" not in Topology.parse("redis+cluster://u:hunter2@h:1").safe_url


# -- Redis Cluster -----------------------------------------------------------------------------
@pytest.fixture(params=[True, False], ids=["l1", "no-l1"])
def ccache(request: pytest.FixtureRequest, cluster_url: str) -> Iterator[Cache]:
    cache = Cache.from_url(cluster_url, namespace="cl", l1=request.param, secret_key="test-secret")
    yield cache
    cache.close()


def _node_keys(cluster: RedisClusterNodes) -> dict[int, list[bytes]]:
    out = {}
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as client:
            out[node.port] = sorted(client.keys("*"))  # test-only inspection of a tiny server
    return out


def test_cluster_spreads_entries_and_keeps_tags_in_one_slot(
    ccache: Cache, redis_cluster: RedisClusterNodes
) -> None:
    ccache.invalidate_tags(["group:0", "group:1", "group:2", "all"])  # creates the versions
    for i in range(60):
        ccache.set(f"item:{i}", i, tags=[f"group:{i % 3}", "all"])
    keys = _node_keys(redis_cluster)
    assert sum(1 for found in keys.values() if any(k.startswith(b"cl:e:") for k in found)) >= 2
    tag_nodes = [port for port, found in keys.items() if any(b":t:" in k for k in found)]
    assert len(tag_nodes) == 1  # all four tag versions live together
    assert ccache.get_many([f"item:{i}" for i in range(60)]) == {f"item:{i}": i for i in range(60)}


def test_cluster_tags_and_get_many_across_slots(ccache: Cache) -> None:
    keys = [f"p:{i}" for i in range(20)]
    for i, key in enumerate(keys):
        ccache.set(key, {"n": i}, tags=["products", f"parity:{i % 2}"])
    ccache.set("untagged", "u")
    assert len(ccache.get_many([*keys, "untagged", "absent"])) == 21
    ccache.invalidate_tags(["parity:0"])
    got = ccache.get_many([*keys, "untagged"])
    assert sorted(got) == sorted([k for i, k in enumerate(keys) if i % 2] + ["untagged"])
    ccache.invalidate_tags(["products"])
    assert ccache.get_many(keys) == {}
    assert ccache.get("p:1") is None
    assert ccache.get("untagged") == "u"


def test_cluster_read_refuses_forged_tag_headers(ccache: Cache, cluster_url: str) -> None:
    # An unsigned entry whose header names keys outside the namespace's tag slot must be a miss,
    # not a CROSSSLOT error that would fail the whole batch.
    ccache.set("good", 1, tags=["t"])
    client = redis.cluster.RedisCluster.from_url(cluster_url.replace("redis+cluster", "redis"))
    try:
        blob = client.get("cl:e:good")
        assert isinstance(blob, bytes)
        header = b"other:t:x\ncl:e:good"
        forged = blob[:4] + len(header).to_bytes(2, "big") + header + blob[6 + blob[5] :]
        client.set("cl:e:forged", forged)
        assert ccache.get_many(["good", "forged"]) == {"good": 1}
        assert ccache.get("forged") is None
        assert ccache.stats()["errors"] == 0
    finally:
        client.close()


def test_cluster_invalidation_reaches_other_processes_l1(cluster_url: str) -> None:
    reader = Cache.from_url(cluster_url, namespace="cl", secret_key="test-secret")
    writer = Cache.from_url(cluster_url, namespace="cl", secret_key="test-secret")
    try:
        writer.set("user:1", "old", tags=["user"])
        assert reader.get("user:1") == "old"  # now in the reader's L1
        wait_until(lambda: reader.stats()["layers"]["redis"]["listening"])
        writer.invalidate_tags(["user"])
        took = wait_until(lambda: reader.get("user:1") is None, timeout=1.0)
        writer.set("user:2", "v1")
        assert reader.get("user:2") == "v1"
        writer.set("user:2", "v2")
        wait_until(lambda: reader.get("user:2") == "v2", timeout=1.0)
        assert took < 0.1
    finally:
        reader.close()
        writer.close()


def test_cluster_lock_admits_one_loader_across_instances(cluster_url: str) -> None:
    caches = [
        Cache.from_url(cluster_url, namespace="cl", l1=False, secret_key="test-secret")
        for _ in range(4)
    ]
    calls = []
    start = threading.Barrier(16)

    def loader() -> str:
        calls.append(1)
        time.sleep(0.2)
        return "value"

    def worker(cache: Cache) -> None:
        start.wait()
        assert cache.get_or_set("hot", loader, ttl=60) == "value"

    threads = [threading.Thread(target=worker, args=(caches[i % 4],)) for i in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(calls) == 1
        assert sum(c.stats()["lock_waits"] for c in caches) >= 1
    finally:
        for cache in caches:
            cache.close()


def test_cluster_clear_touches_only_its_namespace_on_every_node(
    cluster_url: str, redis_cluster: RedisClusterNodes
) -> None:
    ours = Cache.from_url(cluster_url, namespace="cl", secret_key="test-secret")
    theirs = Cache.from_url(cluster_url, namespace="other", secret_key="test-secret")
    try:
        for i in range(50):
            ours.set(f"k{i}", i, tags=["t"])
            theirs.set(f"k{i}", i)
        ours.clear()
        assert ours.get_many([f"k{i}" for i in range(50)]) == {}
        assert len(theirs.get_many([f"k{i}" for i in range(50)])) == 50
        left = [k for found in _node_keys(redis_cluster).values() for k in found]
        assert left and all(k.startswith(b"other:") for k in left)
    finally:
        ours.close()
        theirs.close()


async def test_cluster_async_operations(cluster_url: str) -> None:
    cache = Cache.from_url(cluster_url, namespace="cl", secret_key="test-secret")
    try:
        await cache.aset_many({f"a{i}": i for i in range(10)}, tags=["batch"])
        assert await cache.aget_many([f"a{i}" for i in range(10)]) == {
            f"a{i}": i for i in range(10)
        }
        calls = []

        async def load() -> str:
            calls.append(1)
            await asyncio.sleep(0.05)
            return "v"

        results = await asyncio.gather(
            *(cache.aget_or_set("x", load, tags=["batch"]) for _ in range(20))
        )
        assert results == ["v"] * 20 and len(calls) == 1
        await cache.ainvalidate_tags(["batch"])
        assert await cache.aget_many(["a1", "x"]) == {}
        assert await cache.aadd("n", 1) and not await cache.aadd("n", 2)
        assert await cache.adelete_many(["n", "never-set"]) == 1
        await cache.aclear()
    finally:
        await cache.aclose()
        cache.close()


def test_cluster_write_behind_delivers_everything(cluster_url: str) -> None:
    cache = Cache.from_url(cluster_url, namespace="cl", secret_key="test-secret")
    got: list[tuple[str, Any]] = []
    wb = cache.write_behind("views", flush=got.extend, interval=0.05)
    stop = threading.Event()
    try:
        for i in range(200):
            wb.submit(f"post:{i}", i)
        worker = threading.Thread(target=wb.run_worker, args=(stop,), daemon=True)
        worker.start()
        wait_until(lambda: wb.pending() == 0, timeout=10)
        stop.set()
        worker.join(5)
        assert sorted(got) == sorted((f"post:{i}", i) for i in range(200))
    finally:
        stop.set()
        cache.close()


def test_cluster_node_loss_fails_open_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    with ExitStack() as stack:
        cluster = RedisClusterNodes().start()
        stack.callback(cluster.close)
        cache = Cache.from_url(
            cluster.url, namespace="cl", socket_timeout=0.2, l1=False, secret_key="test-secret"
        )
        stack.callback(cache.close)
        keys = [f"k{i}" for i in range(30)]
        for key in keys:
            cache.set(key, key)
        victim = cluster.node_of("cl:e:k0")
        victim.stop()
        with caplog.at_level(logging.WARNING, "cachekit"):
            for key in keys:
                started = time.monotonic()
                cache.get(key)  # never raises: a miss or an L1 copy
                cache.set(key, "new")
                assert time.monotonic() - started < 1.5
        victim.start()  # same port and node file: it rejoins with its slots
        wait_until(cluster._ready, timeout=20)
        wait_until(lambda: cache.set("after", 1) and cache.get("after") == 1, timeout=10)


# -- Sentinel ----------------------------------------------------------------------------------
def test_sentinel_serves_and_survives_a_failover(redis_sentinel: RedisSentinelSet) -> None:
    cache = Cache.from_url(
        redis_sentinel.url, namespace="sn", socket_timeout=0.2, secret_key="test-secret"
    )
    peer = Cache.from_url(
        redis_sentinel.url, namespace="sn", socket_timeout=0.2, secret_key="test-secret"
    )
    try:
        cache.set("a", 1, tags=["t"])
        assert peer.get("a") == 1
        wait_until(lambda: peer.stats()["layers"]["redis"]["listening"])
        cache.invalidate_tags(["t"])
        wait_until(lambda: peer.get("a") is None, timeout=1.0)
        with redis.Redis(port=redis_sentinel.master.port) as direct:
            assert direct.exists("sn:e:a")  # it really went to the master Sentinel named

        redis_sentinel.master.stop()
        for _ in range(20):  # during the failover: misses, never exceptions
            cache.get("a")
            cache.set("b", 2)
            time.sleep(0.05)
        redis_sentinel.wait_failover()
        with redis.Redis(port=redis_sentinel.replica.port) as promoted:
            # (set() is True once L1 holds the value: look at the new master itself.)
            wait_until(lambda: cache.set("c", 3) and promoted.exists("sn:e:c"), timeout=10)
        # The listener follows the new master too.
        wait_until(lambda: peer.stats()["layers"]["redis"]["listening"], timeout=10)
        assert peer.get("c") == 3
        cache.set("c", 4)
        wait_until(lambda: peer.get("c") == 4, timeout=2.0)
    finally:
        cache.close()
        peer.close()


async def test_sentinel_async(redis_sentinel: RedisSentinelSet) -> None:
    cache = Cache.from_url(redis_sentinel.url, namespace="sn", secret_key="test-secret")
    try:
        await cache.aset("x", {"y": 1}, tags=["t"])
        assert await cache.aget("x") == {"y": 1}
        await cache.ainvalidate_tags(["t"])
        assert await cache.aget("x") is None
    finally:
        await cache.aclose()
        cache.close()


def test_query_string_passwords_are_redacted() -> None:
    layer = RedisLayer("redis://u:pw1@h:1/0?password=pw2&ssl_password=pw3&db=1")
    assert layer.safe_url == "redis://h:1/0?password=***&ssl_password=***&db=1"


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        ({"namspace": "x"}, "did you mean 'namespace'"),  # a Cache() keyword, misspelt
        ({"ssl_ca_cert": "ca.pem"}, "did you mean 'ssl_ca_certs'"),
        ({"read_from_replicas": True}, "unknown option"),  # a cluster-only option
    ],
)
def test_misspelt_options_fail_at_start_up(options: dict[str, Any], hint: str) -> None:
    # redis-py itself would only complain on the first connection (or silently, in the
    # invalidation listener's thread).
    with pytest.raises(ConfigurationError, match=hint):
        Cache.from_url("redis://127.0.0.1:1/0", **options)


def test_topology_specific_options_are_accepted() -> None:
    Cache.from_url(
        "redis+cluster://127.0.0.1:1", read_from_replicas=True, secret_key="test-secret"
    ).close()
    Cache.from_url(
        "redis+sentinel://127.0.0.1:1/m",
        sentinel_kwargs={"password": "x"},
        secret_key="test-secret",
    ).close()
    Cache.from_url(
        "rediss://127.0.0.1:1/0",
        ssl_ca_certs="ca.pem",
        health_check_interval=5,
        secret_key="test-secret",
    ).close()
