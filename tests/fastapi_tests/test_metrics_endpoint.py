"""``cachekit_fastapi.metrics``: a Prometheus scrape endpoint on a real FastAPI app with a
``CacheKit``, driven through httpx's ASGI transport."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from cachekit_core import Cache, ConfigurationError
from cachekit_fastapi import CacheKit
from cachekit_fastapi.metrics import add_metrics_endpoint, metrics_route

from ._asgi import client

NAMESPACE = "metricsapi"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def make_app(cache: Cache) -> FastAPI:
    app = FastAPI()
    kit = CacheKit(app, cache)

    @app.get("/price/{sku}")
    async def price(sku: str) -> dict[str, str]:
        async def load() -> str:
            return f"{sku}: 10"

        return {"price": await cache.aget_or_set(f"price:{sku}", load)}

    add_metrics_endpoint(app, kit)
    return app


async def test_scrape_reports_hits_and_loader_latency() -> None:
    cache = Cache(namespace=NAMESPACE)
    async with client(make_app(cache)) as http:
        for _ in range(2):  # a miss that runs the loader, then a hit
            assert (await http.get("/price/a")).json() == {"price": "a: 10"}
        response = await http.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["cache-control"] == "no-store"
        got = samples(response.text)
        ns = ("namespace", NAMESPACE)
        assert got["cachekit_hits_total", (("layer", "memory"), ns)] == 1
        assert got["cachekit_loader_calls_total", (ns,)] == 1
        assert got["cachekit_loader_duration_seconds_count", (ns, ("outcome", "ok"))] == 1

        await http.get("/price/a")
        again = samples((await http.get("/metrics")).text)
        assert again["cachekit_hits_total", (("layer", "memory"), ns)] == 2  # never cached
        assert (await http.post("/metrics")).status_code == 405
        schema = (await http.get("/openapi.json")).json()
        assert "/metrics" not in schema["paths"]
        assert "/price/{sku}" in schema["paths"]
    await cache.aclose()


async def test_route_on_starlette_with_own_registry_and_path() -> None:
    cache = Cache(namespace=NAMESPACE)
    registry = CollectorRegistry()
    app = Starlette(routes=[metrics_route(cache, registry, path="/internal/metrics")])
    cache.get_or_set("k", lambda: 1)
    async with client(app) as http:
        response = await http.get("/internal/metrics")
    assert response.status_code == 200
    got = samples(response.text)
    assert got["cachekit_loader_calls_total", (("namespace", NAMESPACE),)] == 1
    assert any(m.name == "cachekit_hits" for m in registry.collect())
    await cache.aclose()


def test_two_apps_do_not_clash() -> None:
    """Each endpoint gets a registry of its own by default: no duplicate-series errors."""
    first, second = Cache(namespace=NAMESPACE), Cache(namespace=NAMESPACE)
    make_app(first)
    make_app(second)
    shared = CollectorRegistry()  # an explicit shared one needs distinct namespaces
    metrics_route(first, shared)
    with pytest.raises(ConfigurationError, match="already registered"):
        metrics_route(second, shared)
    first.close()
    second.close()
