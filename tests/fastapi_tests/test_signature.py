"""``kit.cache`` is invisible to FastAPI: same signature, dependencies, validation, OpenAPI."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel

from cachekit_core import Cache
from cachekit_fastapi import CacheKit


class Item(BaseModel):
    id: int
    name: str
    db: str
    token: str | None = None


def get_db() -> str:
    return "primary"


def require_key(x_key: Annotated[str | None, Header()] = None) -> str | None:
    if x_key == "forbidden":
        raise HTTPException(status_code=403, detail="no")
    return x_key


Endpoint = Callable[..., Any]
ENDPOINTS: dict[str, tuple[Endpoint, Endpoint]] = {}


def build(cached: bool) -> FastAPI:
    """The same app twice: with every endpoint under ``kit.cache`` (and the middleware), and
    without cachekit at all."""
    app = FastAPI(title="twin")
    kit = CacheKit(app, Cache()) if cached else None

    def cache(**options: Any) -> Callable[[Endpoint], Endpoint]:
        def decorate(endpoint: Endpoint) -> Endpoint:
            wrapped = kit.cache(**options)(endpoint) if kit is not None else endpoint
            ENDPOINTS[endpoint.__name__] = (endpoint, wrapped)
            return wrapped

        return decorate

    @app.get(
        "/items/{item_id}",
        response_model=Item,
        summary="Read one item",
        tags=["items"],
        dependencies=[Depends(require_key)],
    )
    @cache(ttl=60, tags=lambda item_id: [f"items:{item_id}"])
    async def read_item(
        item_id: int,
        q: Annotated[str | None, Query(max_length=5)] = None,
        db: Annotated[str, Depends(get_db)] = "",
        x_token: Annotated[str | None, Header()] = None,
    ) -> Any:
        """Read one item (the docstring becomes the OpenAPI description)."""
        return {"id": item_id, "name": q or "thing", "db": db, "token": x_token, "extra": 1}

    @app.get("/sync/{item_id}", tags=["items"])
    @cache(ttl=60, tags=["items:{item_id}"])
    def read_sync(item_id: int, limit: int = 10, db: str = Depends(get_db)) -> dict[str, Any]:
        return {"id": item_id, "limit": limit, "db": db, "thread": threading.current_thread().name}

    @app.get("/search", deprecated=True)
    @cache(ttl=30)
    async def search(terms: Annotated[list[str], Query()]) -> list[str]:
        return sorted(terms)

    return app


def test_openapi_is_identical_to_the_undecorated_twin() -> None:
    assert build(cached=True).openapi() == build(cached=False).openapi()


def test_signature_kind_and_metadata_are_kept() -> None:
    build(cached=True)
    for name, (original, wrapped) in ENDPOINTS.items():
        assert inspect.signature(wrapped) == inspect.signature(original), name
        assert inspect.iscoroutinefunction(wrapped) == inspect.iscoroutinefunction(original)
        assert wrapped.__wrapped__ is original  # type: ignore[attr-defined]
        assert (wrapped.__name__, wrapped.__doc__) == (original.__name__, original.__doc__)


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("/items/abc", {}),
        ("/items/1?q=toolong", {}),
        ("/items/1?q=a&q=b&q=toolong", {}),
        ("/sync/1?limit=x", {}),
        ("/search", {}),
        ("/items/1", {"X-Key": "forbidden"}),
    ],
)
def test_validation_and_dependency_errors_match_the_twin(url: str, headers: dict[str, str]) -> None:
    with TestClient(build(cached=True)) as cached, TestClient(build(cached=False)) as bare:
        got, expected = cached.get(url, headers=headers), bare.get(url, headers=headers)
    assert got.status_code == expected.status_code in (403, 422)
    assert got.json() == expected.json()


def test_dependencies_and_response_model_still_apply() -> None:
    app = build(cached=True)
    with TestClient(app) as tc:
        first = tc.get("/items/3?q=hat", headers={"X-Token": "t"})
        hit = tc.get("/items/3?q=hat", headers={"X-Token": "t"})
        app.dependency_overrides[get_db] = lambda: "replica"
        other = tc.get("/items/4")
    # response_model filtered "extra"; Depends and Header() were resolved.
    assert first.json() == {"id": 3, "name": "hat", "db": "primary", "token": "t"}
    assert (hit.headers["x-cache"], hit.json()) == ("HIT", first.json())
    assert other.json()["db"] == "replica"  # overrides reach the decorated endpoint


def test_a_def_endpoint_still_runs_in_the_threadpool() -> None:
    with TestClient(build(cached=True)) as tc:
        first = tc.get("/sync/1?limit=5")
        hit = tc.get("/sync/1?limit=5")
    assert first.json()["thread"] != threading.main_thread().name
    assert (first.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert hit.json() == first.json()


def test_list_query_parameters_and_their_order_are_keyed() -> None:
    with TestClient(build(cached=True)) as tc:
        ab = tc.get("/search?terms=b&terms=a")
        again = tc.get("/search?terms=b&terms=a")
        ba = tc.get("/search?terms=a&terms=b")
    assert ab.json() == ba.json() == ["a", "b"]
    assert (again.headers["x-cache"], ba.headers["x-cache"]) == ("HIT", "MISS")
