"""Issue 10, item 2: a hit never skips a dependency.

A route whose dependency tree is empty apart from path and query parameters is answered
before routing; any other route's hit is answered inside the route, once FastAPI resolved its
dependencies. ``Header()``/``Cookie()`` parameters are part of the key (sent in ``Vary``). A
route guarded by a security scheme is stored only with ``per_user=True`` (keyed by the
credentials) or ``public=True``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from cachekit_core import Cache
from cachekit_fastapi import CacheKit

from ._asgi import Clock, client, make_cache

KEYS = {"k1": "ada", "k2": "bob"}


def require_api_key(x_api_key: Annotated[str | None, Header()] = None) -> str:
    if x_api_key not in KEYS:
        raise HTTPException(401, "no valid API key")
    return KEYS[x_api_key]


api_key = APIKeyHeader(name="X-Key", auto_error=False)
bearer = HTTPBearer()


def bearer_user(credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> str:
    if credentials.credentials not in KEYS:
        raise HTTPException(403, "bad token")
    return KEYS[credentials.credentials]


def key_user(key: Annotated[str | None, Depends(api_key)]) -> str:
    if key not in KEYS:
        raise HTTPException(403, "bad key")
    return KEYS[key]


class Inside:
    """Counts the requests that entered the app (this middleware sits inside the cache)."""

    def __init__(self, app: ASGIApp, counts: dict[str, int]) -> None:
        self.app, self.counts = app, counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.counts["app"] += 1
        await self.app(scope, receive, send)


class Api:
    def __init__(self, cache: Cache) -> None:
        self.renders: dict[str, int] = {}
        self.counts = {"app": 0}
        self.app = app = FastAPI()
        app.add_middleware(Inside, counts=self.counts)
        kit = CacheKit(app, cache)

        @app.get("/open/{n}")
        @kit.cache(ttl=60)
        async def open_(n: int, q: str = "") -> dict[str, Any]:
            return self.render("open", n=n, q=q)

        @app.get("/secret", dependencies=[Depends(require_api_key)])
        @kit.cache(ttl=60)
        async def secret() -> dict[str, Any]:
            return self.render("secret", body="the protected body")

        @app.get("/header-key")
        @kit.cache(ttl=60)
        def header_key(x_api_key: Annotated[str, Header()]) -> dict[str, Any]:
            if x_api_key not in KEYS:
                raise HTTPException(401)
            return self.render("header-key", user=KEYS[x_api_key])

        @app.get("/hello")
        @kit.cache(ttl=60)
        async def hello(accept_language: Annotated[str, Header()] = "en") -> dict[str, Any]:
            return self.render("hello", lang=accept_language)

        @app.get("/guarded")
        @kit.cache(ttl=60)
        async def guarded(user: Annotated[str, Depends(key_user)]) -> dict[str, Any]:
            return self.render("guarded", user=user)

        @app.get("/mine")
        @kit.cache(ttl=60, per_user=True)
        async def mine(user: Annotated[str, Depends(key_user)]) -> dict[str, Any]:
            return self.render("mine", user=user)

        @app.get("/catalogue", dependencies=[Depends(bearer_user)])
        @kit.cache(ttl=60, public=True)
        async def catalogue() -> dict[str, Any]:
            return self.render("catalogue")

    def render(self, name: str, **values: Any) -> dict[str, Any]:
        self.renders[name] = self.renders.get(name, 0) + 1
        return {"n": self.renders[name], **values}


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    built = make_cache(request.param, url, Clock())
    yield built
    await built.aclose()


def xc(response: httpx.Response) -> str | None:
    state: str | None = response.headers.get("x-cache")
    return state


async def test_a_route_without_dependencies_is_answered_before_routing(cache: Cache) -> None:
    api = Api(cache)
    async with client(api.app) as c:
        first = await c.get("/open/1?q=a")
        hits = [await c.get("/open/1?q=a") for _ in range(3)]
    assert [xc(r) for r in (first, *hits)] == ["MISS", "HIT", "HIT", "HIT"]
    assert api.counts["app"] == 1 and api.renders["open"] == 1


async def test_a_hit_never_skips_a_route_dependency(cache: Cache) -> None:
    api = Api(cache)
    async with client(api.app) as c:
        denied = await c.get("/secret")
        first = await c.get("/secret", headers={"X-Api-Key": "k1"})
        hit = await c.get("/secret", headers={"X-Api-Key": "k1"})
        after = [
            await c.get("/secret"),
            await c.get("/secret", headers={"X-Api-Key": "wrong"}),
        ]
    assert denied.status_code == 401 and xc(denied) is None
    assert (xc(first), xc(hit)) == ("MISS", "HIT")
    assert hit.json()["body"] == "the protected body" and api.renders["secret"] == 1
    for response in after:  # never the cached body, never X-Cache
        assert response.status_code == 401 and xc(response) is None
        assert "protected" not in response.text


async def test_a_header_parameter_is_part_of_the_key(cache: Cache) -> None:
    api = Api(cache)
    async with client(api.app) as c:
        missing = await c.get("/header-key")
        wrong = await c.get("/header-key", headers={"X-Api-Key": "nope"})
        ada = [await c.get("/header-key", headers={"X-Api-Key": "k1"}) for _ in range(2)]
        bob = [await c.get("/header-key", headers={"X-Api-Key": "k2"}) for _ in range(2)]
    assert (missing.status_code, wrong.status_code) == (422, 401)
    assert [xc(r) for r in ada + bob] == ["MISS", "HIT", "MISS", "HIT"]
    assert [r.json()["user"] for r in ada + bob] == ["ada", "ada", "bob", "bob"]
    assert "x-api-key" in ada[0].headers["vary"].lower()


async def test_accept_language_de_never_gets_the_fr_page(cache: Cache) -> None:
    api = Api(cache)
    async with client(api.app) as c:
        fr = [await c.get("/hello", headers={"Accept-Language": "fr"}) for _ in range(2)]
        de = await c.get("/hello", headers={"Accept-Language": "de"})
        default = await c.get("/hello")
    assert [xc(r) for r in fr] == ["MISS", "HIT"] and fr[1].json()["lang"] == "fr"
    assert (xc(de), de.json()["lang"]) == ("MISS", "de")
    assert (xc(default), default.json()["lang"]) == ("MISS", "en")
    assert "accept-language" in de.headers["vary"].lower()


async def test_a_guarded_route_is_not_stored_without_per_user_or_public(cache: Cache) -> None:
    api = Api(cache)
    async with client(api.app) as c:
        responses = [await c.get("/guarded", headers={"X-Key": k}) for k in ("k1", "k2", "k1")]
        denied = await c.get("/guarded")
    assert [xc(r) for r in responses] == ["BYPASS"] * 3
    assert [r.json()["user"] for r in responses] == ["ada", "bob", "ada"]
    assert denied.status_code == 403 and api.renders["guarded"] == 3


async def test_per_user_on_a_guarded_route_is_keyed_by_the_credentials(cache: Cache) -> None:
    api = Api(cache)
    async with client(api.app) as c:
        got = [await c.get("/mine", headers={"X-Key": k}) for k in ("k1", "k2", "k1", "k2")]
        denied = [await c.get("/mine"), await c.get("/mine", headers={"X-Key": "k3"})]
    assert [xc(r) for r in got] == ["MISS", "MISS", "HIT", "HIT"]
    assert [r.json()["user"] for r in got] == ["ada", "bob", "ada", "bob"]
    assert all("private" in r.headers["cache-control"] for r in got)
    assert [r.status_code for r in denied] == [403, 403]
    assert all(xc(r) is None for r in denied)


async def test_public_on_a_guarded_route_shares_one_page_behind_the_guard(cache: Cache) -> None:
    api = Api(cache)
    async with client(api.app) as c:
        one = await c.get("/catalogue", headers={"Authorization": "Bearer k1"})
        two = await c.get("/catalogue", headers={"Authorization": "Bearer k2"})
        wrong = await c.get("/catalogue", headers={"Authorization": "Bearer k3"})
        none = await c.get("/catalogue")
    assert (xc(one), xc(two)) == ("MISS", "HIT") and api.renders["catalogue"] == 1
    assert wrong.status_code == 403 and none.status_code in (401, 403)
    assert xc(wrong) is None and xc(none) is None
