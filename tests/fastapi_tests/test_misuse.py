"""Issue 10, item 8 (``kit.cache``): no silent no-ops. A ``kit.cache`` that could never cache
raises: above ``@app.get`` at import (on the kit's own app) or at start-up (a router included
later); on a route without GET, and ``per_user=True`` with nothing to identify the user, at
start-up (the lifespan, or the first request when the app is served without it)."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.security import APIKeyHeader
from starlette.testclient import TestClient

from cachekit_core import Cache, ConfigurationError
from cachekit_fastapi import CacheKit

from ._asgi import client


def test_kit_cache_above_app_get_raises_at_import() -> None:
    app = FastAPI()
    kit = CacheKit(app, Cache())
    with pytest.raises(ConfigurationError, match=r"above @app.get.*under"):

        @kit.cache(ttl=60)
        @app.get("/x")
        async def x() -> str:
            return "x"


def test_kit_cache_above_a_router_get_raises_at_startup() -> None:
    app = FastAPI()
    kit = CacheKit(app, Cache())
    router = APIRouter()

    @kit.cache(ttl=60)
    @router.get("/x")
    async def x() -> str:
        return "x"

    app.include_router(router)
    with pytest.raises(ConfigurationError, match=r"above @app\.get"), TestClient(app):
        pass


async def test_kit_cache_on_a_post_route_raises_at_startup_or_first_request() -> None:
    app = FastAPI()
    kit = CacheKit(app, Cache())

    @app.post("/x")
    @kit.cache(ttl=60)
    async def x() -> str:
        return "x"

    with pytest.raises(ConfigurationError, match="only GET"), TestClient(app):
        pass
    with pytest.raises(ConfigurationError, match="only GET"):  # served without lifespan
        async with client(app) as c:
            await c.post("/x")


def test_per_user_without_a_user_raises_at_startup() -> None:
    app = FastAPI()
    kit = CacheKit(app, Cache())

    @app.get("/me")
    @kit.cache(ttl=60, per_user=True)
    async def me() -> str:
        return "me"

    with pytest.raises(ConfigurationError, match="nothing identifies the user"), TestClient(app):
        pass


SCHEME = APIKeyHeader(name="X-Key")  # module level: the annotations are strings


def test_per_user_with_a_user_function_or_a_security_scheme_is_fine() -> None:
    app = FastAPI()
    kit = CacheKit(app, Cache())

    @app.get("/mine")
    @kit.cache(ttl=60, per_user=True)
    async def mine(key: Annotated[str, Depends(SCHEME)]) -> str:
        return key

    other = FastAPI()
    kit2 = CacheKit(other, Cache(), user=lambda scope: None)

    @other.get("/me")
    @kit2.cache(ttl=60, per_user=True)
    async def me() -> str:
        return "me"

    for each in (app, other):
        with TestClient(each):
            pass


def test_per_user_and_public_together_raise() -> None:
    app = FastAPI()
    kit = CacheKit(app, Cache())
    with pytest.raises(TypeError, match="not both"):
        kit.cache(per_user=True, public=True)
