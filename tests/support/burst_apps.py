"""Apps for the request-coalescing burst tests (issue 10), run in process or as real servers
(``uvicorn --workers 4``), configured by environment variables:

- ``BURST_REDIS_URL``: the cache's Redis (unset: a memory-only cache);
- ``BURST_COUNTER_URL``: a Redis the renders are counted in (``INCR burst:renders:<page>``);
  unset, they are counted in ``RENDERS`` (one process only).

Pages (each render takes ``RENDER_SECONDS``): ``/page`` (ttl 60), ``/expiring`` (ttl 1, no
stale window), ``/cookie`` (sets a cookie: never stored). ``/health`` answers with the
worker's pid in ``X-Pid``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from typing import Any

RENDER_SECONDS = float(os.environ.get("BURST_RENDER_SECONDS", "0.3"))
RENDERS: collections.Counter[str] = collections.Counter()
TTLS = {"page": 60, "expiring": 1, "cookie": 60}


def _counter() -> Any:
    url = os.environ.get("BURST_COUNTER_URL")
    if not url:
        return None
    import redis

    return redis.Redis.from_url(url)


_COUNTER = _counter()


def count(page: str) -> None:
    if _COUNTER is None:
        RENDERS[page] += 1
    else:
        _COUNTER.incr(f"burst:renders:{page}")


def make_cache() -> Any:
    from cachekit_core import Cache

    url = os.environ.get("BURST_REDIS_URL")
    options: dict[str, Any] = {"namespace": "burst", "lock_wait": 5.0, "lock_ttl": 10.0}
    if url:
        return Cache.from_url(url, secret_key="burst-secret", **options)
    return Cache(**options)


def fastapi_app(cache: Any = None) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    from cachekit_fastapi import CacheKit

    app = FastAPI()
    kit = CacheKit(app, cache if cache is not None else make_cache())

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("ok", headers={"X-Pid": str(os.getpid())})

    @app.get("/page")
    @kit.cache(ttl=TTLS["page"])
    async def page() -> PlainTextResponse:
        await asyncio.sleep(RENDER_SECONDS)
        count("page")
        return PlainTextResponse(f"page {time.time()}")

    @app.get("/expiring")
    @kit.cache(ttl=TTLS["expiring"])
    async def expiring() -> PlainTextResponse:
        await asyncio.sleep(RENDER_SECONDS)
        count("expiring")
        return PlainTextResponse(f"expiring {time.time()}")

    @app.get("/cookie")
    @kit.cache(ttl=TTLS["cookie"])
    async def cookie() -> PlainTextResponse:
        await asyncio.sleep(RENDER_SECONDS)
        count("cookie")
        response = PlainTextResponse("with a cookie")
        response.set_cookie("visitor", "1")
        return response

    return app


def __getattr__(name: str) -> Any:
    # ``uvicorn tests.support.burst_apps:app``: built on first access, in the worker.
    if name == "app":
        built = globals()["app"] = fastapi_app()
        return built
    raise AttributeError(name)
