from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.redis_server import REDIS_SERVER, RedisServer


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
