"""The FastAPI app for the HTTP benchmark: ``uvicorn apps.fastapi_app:app`` (from ``bench/``).

``BENCH_CONTENDER`` picks what ``GET /p/{pid}`` is; ``BENCH_REDIS_URL`` is the private Redis.
Every contender's endpoint is the same ``async def`` returning ``product_payload(pid)`` (a
dict FastAPI serialises to ~1 kB of JSON); only the caching around it differs.
``GET /calls`` (never cached) says how often that work ran in the process.

- ``plain``: no cache.
- ``cachekit_l1``: ``CacheKit(app, Cache())`` and ``@kit.cache(ttl=60)`` (in-process L1).
- ``cachekit_redis``: the same with ``Cache.from_url(url, l1=False, secret_key=...)``: every
  hit reads Redis (and checks the entry's signature, as every Redis cache does by default).
- ``fc2_mem`` / ``fc2_redis``: fastapi-cache2 ``@cache(expire=60)`` on ``InMemoryBackend`` /
  ``RedisBackend(redis.asyncio)``.
- ``cashews_redis``: cashews ``@cache(ttl=60)`` on ``redis://`` (caches the returned dict;
  FastAPI still serialises it on a hit).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from .work import calls, product_payload

CONTENDER = os.environ.get("BENCH_CONTENDER", "plain")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "")
CONTENDERS = ("plain", "cachekit_l1", "cachekit_redis", "fc2_mem", "fc2_redis", "cashews_redis")


def _plain() -> FastAPI:
    app = FastAPI()

    @app.get("/p/{pid}")
    async def product(pid: int) -> Any:
        return product_payload(pid)

    return app


def _cachekit(redis: bool) -> FastAPI:
    from cachekit_core import Cache
    from cachekit_fastapi import CacheKit

    cache = (
        Cache.from_url(REDIS_URL, l1=False, namespace="bench-fa", secret_key="bench-secret")
        if redis
        else Cache()
    )
    app = FastAPI()
    kit = CacheKit(app, cache)

    @app.get("/p/{pid}")
    @kit.cache(ttl=60)
    async def product(pid: int) -> Any:
        return product_payload(pid)

    return app


def _fastapi_cache2(redis: bool) -> FastAPI:
    from fastapi_cache import FastAPICache
    from fastapi_cache.decorator import cache

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if redis:
            from fastapi_cache.backends.redis import RedisBackend
            from redis import asyncio as aioredis

            client = aioredis.from_url(REDIS_URL)
            FastAPICache.init(RedisBackend(client), prefix="bench-fc2")
        else:
            from fastapi_cache.backends.inmemory import InMemoryBackend

            FastAPICache.init(InMemoryBackend(), prefix="bench-fc2")
        yield
        if redis:
            await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/p/{pid}")
    @cache(expire=60)
    async def product(pid: int) -> Any:
        return product_payload(pid)

    return app


def _cashews() -> FastAPI:
    from cashews import cache

    cache.setup(REDIS_URL)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await cache.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/p/{pid}")
    @cache(ttl=60, prefix="bench-cashews")
    async def product(pid: int) -> Any:
        return product_payload(pid)

    return app


def build(contender: str) -> FastAPI:
    if contender == "plain":
        return _plain()
    if contender in ("cachekit_l1", "cachekit_redis"):
        return _cachekit(redis=contender == "cachekit_redis")
    if contender in ("fc2_mem", "fc2_redis"):
        return _fastapi_cache2(redis=contender == "fc2_redis")
    if contender == "cashews_redis":
        return _cashews()
    raise SystemExit(f"unknown BENCH_CONTENDER {contender!r}; one of {CONTENDERS}")


app = build(CONTENDER)


@app.get("/calls")
async def view_calls() -> dict[str, int]:
    """How many times the product work ran (the harness checks cached contenders with it)."""
    return {"calls": calls()}
