"""Request coalescing on FastAPI (issue 10, "Must hold"): 100 concurrent requests to a cold
page and to a just-expired one (no stale window) render it once, in one process (httpx's ASGI
transport) and in four (uvicorn workers sharing Redis); a burst on a page that sets a cookie
is rendered in parallel, not one request after the other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from cachekit_core import Cache
from tests.support import burst_apps
from tests.support.burst_servers import burst, fire, uvicorn_workers

RENDER = burst_apps.RENDER_SECONDS
N = 100


def x_cache(response: httpx.Response) -> str:
    return response.headers.get("x-cache", "")


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "memory":
        built = Cache(namespace="burst", lock_wait=5.0)
    else:
        url = request.getfixturevalue("redis_url")
        built = Cache.from_url(url, namespace="burst", secret_key="s", lock_wait=5.0)
    burst_apps.RENDERS.clear()
    yield built
    built.close()


async def test_one_process_renders_a_cold_then_an_expired_page_once(cache: Cache) -> None:
    app = burst_apps.fastapi_app(cache)
    limits = httpx.Limits(max_connections=N)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", limits=limits, timeout=30
        ) as client:
            cold, _ = await fire(client, "/page", N)
            assert burst_apps.RENDERS["page"] == 1
            assert sorted(map(x_cache, cold)) == ["HIT"] * (N - 1) + ["MISS"]
            await client.get("/expiring")
            await asyncio.sleep(1.1)  # past ttl=1: expired, no stale window
            expired, _ = await fire(client, "/expiring", N)
            assert burst_apps.RENDERS["expiring"] == 2
            assert sorted(map(x_cache, expired)) == ["HIT"] * (N - 1) + ["MISS"]
            assert len({r.text for r in expired}) == 1
            cookie, wall = await fire(client, "/cookie", N)
            assert burst_apps.RENDERS["cookie"] == N
            assert {r.status_code for r in cookie} == {200}
            assert wall < N * RENDER / 5, (
                wall
            )  # in parallel: N renders one after the other take N * RENDER
    finally:
        await cache.aclose()


@pytest.mark.slow
def test_four_processes_sharing_redis_render_once(tmp_path: Path, redis_url: str) -> None:
    counter = redis.Redis.from_url(redis_url)
    env = {"BURST_REDIS_URL": redis_url, "BURST_COUNTER_URL": redis_url}
    log = tmp_path / "uvicorn.log"
    try:
        with uvicorn_workers("tests.support.burst_apps:app", env, log) as base:
            cold, _ = burst(base, "/page", N)
            assert int(counter.get("burst:renders:page") or 0) == 1
            assert sorted(map(x_cache, cold)) == ["HIT"] * (N - 1) + ["MISS"]
            httpx.get(f"{base}/expiring")
            time.sleep(1.1)
            expired, _ = burst(base, "/expiring", N)
            assert int(counter.get("burst:renders:expiring") or 0) == 2
            assert sorted(map(x_cache, expired)) == ["HIT"] * (N - 1) + ["MISS"]
            cookie, wall = burst(base, "/cookie", N)
            assert int(counter.get("burst:renders:cookie") or 0) == N
            assert {r.status_code for r in cookie} == {200}
            assert wall < N * RENDER / 5, (
                wall
            )  # in parallel: N renders one after the other take N * RENDER
    finally:
        counter.close()
