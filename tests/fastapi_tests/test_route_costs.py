"""Issue 10, item 4 (FastAPI): only cached routes pay, and others pass untouched."""

from __future__ import annotations

import redis
from fastapi import FastAPI
from starlette.responses import PlainTextResponse

from cachekit_core import Cache
from cachekit_fastapi import CacheKit

from ._asgi import client


def commands(url: str) -> dict[str, int]:
    """Redis commands run since the last CONFIG RESETSTAT, by name (INFO/CONFIG left out)."""
    stats = redis.Redis.from_url(url).info("commandstats")
    found = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    # This probe's own commands, and the cache's invalidation listener (subscribed once, in
    # the background, whenever its connection comes up): not a request's cost.
    ours = ("info", "config", "config|resetstat", "hello", "client|setinfo", "subscribe")
    return {k: v for k, v in found.items() if k not in ours}


async def test_an_undecorated_route_costs_no_redis_command_and_gets_no_header(
    redis_url: str,
) -> None:
    cache = Cache.from_url(redis_url, namespace="costs", secret_key="test-secret")
    app = FastAPI()
    kit = CacheKit(app, cache)
    renders = [0]

    @app.get("/metrics-like")
    async def plain() -> PlainTextResponse:
        renders[0] += 1
        return PlainTextResponse("plain", headers={"Cache-Control": "max-age=60"})

    @app.get("/cached")
    @kit.cache(ttl=60)
    async def cached() -> PlainTextResponse:
        return PlainTextResponse("cached")

    try:
        async with client(app) as c:
            await c.get("/cached")  # the cache is in use (connections open)
            redis.Redis.from_url(redis_url).config_resetstat()
            responses = [await c.get("/metrics-like") for _ in range(1000)]
            assert commands(redis_url) == {}
            assert all("x-cache" not in r.headers and "etag" not in r.headers for r in responses)
            assert renders[0] == 1000 and (await c.get("/cached")).headers["x-cache"] == "HIT"
            assert (await c.post("/metrics-like")).status_code == 405
        stats = cache.stats()
        assert "misses" not in stats or stats["misses"] <= 1  # the one cold /cached
    finally:
        await cache.aclose()


async def test_an_unsafe_method_invalidates_only_a_cached_urls_page() -> None:
    app = FastAPI()
    kit = CacheKit(app, Cache())

    @app.get("/doc")
    @kit.cache(ttl=60)
    async def doc() -> PlainTextResponse:
        return PlainTextResponse("doc")

    @app.post("/doc")
    async def save() -> PlainTextResponse:
        return PlainTextResponse("saved")

    @app.post("/other")
    async def other() -> PlainTextResponse:
        return PlainTextResponse("other")

    async with client(app) as c:
        await c.get("/doc")
        assert (await c.get("/doc")).headers["x-cache"] == "HIT"
        assert "x-cache" not in (await c.post("/other")).headers  # not a cached URL
        assert (await c.post("/doc")).headers["x-cache"] == "BYPASS"
        assert (await c.get("/doc")).headers["x-cache"] == "MISS"
