"""Request coalescing on Django (issue 10, "Must hold"): 100 concurrent requests to a cold
page and to a just-expired one (no stale window) render it once, in one process (the test
client in threads, memory and Redis) and in four (uvicorn workers sharing Redis); a burst on a
page that sets a cookie is rendered in parallel, not one request after the other."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from django.test import Client

from tests.support import burst_apps, burst_django
from tests.support.burst_servers import burst, uvicorn_workers

RENDER = burst_apps.RENDER_SECONDS
N = 100


def threaded(path: str, n: int = N) -> tuple[list[Any], float]:
    """``n`` threads, each with its own test client, GET ``path`` at once."""
    results: list[Any] = [None] * n
    errors: list[BaseException] = []
    gate = threading.Barrier(n)

    def run(i: int) -> None:
        client = Client()
        gate.wait()
        try:
            results[i] = client.get(path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results, time.perf_counter() - began


def x_cache(response: Any) -> str:
    return str(response.headers.get("X-Cache", ""))


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_one_process_renders_a_cold_then_an_expired_page_once(
    settings: Any, request: pytest.FixtureRequest, kind: str
) -> None:
    location = {"LOCATION": request.getfixturevalue("redis_url")} if kind == "redis" else {}
    settings.CACHES = {
        "default": {**burst_django.CACHES["default"], **location, "OPTIONS": {"NAMESPACE": "b"}}
    }
    settings.CACHEKIT = {}
    settings.ROOT_URLCONF = burst_django.ROOT_URLCONF
    settings.MIDDLEWARE = burst_django.MIDDLEWARE
    burst_apps.RENDERS.clear()
    cold, _ = threaded("/page")
    assert burst_apps.RENDERS["page"] == 1
    assert sorted(map(x_cache, cold)) == ["HIT"] * (N - 1) + ["MISS"]
    Client().get("/expiring")
    time.sleep(1.1)  # past ttl=1: expired, no stale window
    expired, _ = threaded("/expiring")
    assert burst_apps.RENDERS["expiring"] == 2
    assert sorted(map(x_cache, expired)) == ["HIT"] * (N - 1) + ["MISS"]
    cookie, wall = threaded("/cookie")
    assert burst_apps.RENDERS["cookie"] == N
    assert {r.status_code for r in cookie} == {200}
    assert wall < N * RENDER / 5, wall  # in parallel: N renders one after the other take N * RENDER


@pytest.mark.slow
def test_four_processes_sharing_redis_render_once(tmp_path: Path, redis_url: str) -> None:
    counter = redis.Redis.from_url(redis_url)
    env = {
        "BURST_REDIS_URL": redis_url,
        "BURST_COUNTER_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "tests.support.burst_django",
    }
    log = tmp_path / "uvicorn.log"
    try:
        with uvicorn_workers("tests.support.burst_django:application", env, log) as base:
            cold, _ = burst(base, "/page", N)
            assert int(counter.get("burst:renders:page") or 0) == 1
            assert sorted(map(x_cache, cold)) == ["HIT"] * (N - 1) + ["MISS"]
            burst(base, "/expiring", 1)
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
