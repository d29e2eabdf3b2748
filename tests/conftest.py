from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.redis_server import REDIS_SERVER, RedisServer
from tests.support.redis_topologies import RedisClusterNodes, RedisSentinelSet


def _require_redis() -> None:
    if REDIS_SERVER is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: under CI this fails instead of skipping")
        pytest.skip("redis-server is not installed")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private server for the session (flushed between tests by `redis_url`)."""
    _require_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.cli("FLUSHALL")  # our own private server: flushing it is fine
    return redis_server.url


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A server of its own, for tests that kill, freeze or restart it."""
    _require_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """A private 3-master Redis Cluster for the session (flushed per test by `cluster_url`)."""
    _require_redis()
    cluster = RedisClusterNodes()
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterNodes) -> str:
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def redis_sentinel() -> Iterator[RedisSentinelSet]:
    """A master, a replica and a Sentinel of their own (tests fail the master over)."""
    _require_redis()
    topology = RedisSentinelSet()
    try:
        yield topology.start()
    finally:
        topology.close()
