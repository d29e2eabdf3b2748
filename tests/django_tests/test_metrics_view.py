"""``cachekit_django.views.metrics``: a Prometheus scrape of the engine (``CACHES["default"]``'s),
served by a real URLconf through Django's test client."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path
from prometheus_client.parser import text_string_to_metric_families

from cachekit_django import conf
from cachekit_django.views import metrics, metrics_registry

NAMESPACE = "metricsview"
BACKEND = "cachekit_django.cache.CachekitCache"


def caches_in(namespace: str) -> dict[str, dict[str, Any]]:
    return {"default": {"BACKEND": BACKEND, "OPTIONS": {"NAMESPACE": namespace}}}


def product(request: HttpRequest, pk: int) -> HttpResponse:
    value = conf.engine().get_or_set(f"product:{pk}", lambda: f"product {pk}")
    return HttpResponse(value)


urlpatterns = [path("metrics/", metrics), path("product/<int:pk>/", product)]

pytestmark = pytest.mark.django_db


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@override_settings(ROOT_URLCONF=__name__, CACHES=caches_in(NAMESPACE))
def test_scrape_reports_hits_and_loader_latency(client: Client) -> None:
    # Counters come from the engine whenever the first scrape happens, but loader latency is
    # only observed once registered: what AppConfig.ready() would do at start-up.
    metrics_registry()
    for _ in range(2):  # a miss that runs the loader, then a hit
        assert client.get("/product/1/").content == b"product 1"

    response = client.get("/metrics/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "no-store" in response["Cache-Control"]
    got = samples(response.content.decode())
    ns = ("namespace", NAMESPACE)
    assert got["cachekit_hits_total", (("layer", "memory"), ns)] == 1
    assert got["cachekit_loader_calls_total", (ns,)] == 1
    assert got["cachekit_loader_duration_seconds_count", (ns, ("outcome", "ok"))] == 1
    assert ("cachekit_loader_duration_seconds_sum", (ns, ("outcome", "ok"))) in got


@override_settings(ROOT_URLCONF=__name__, CACHES=caches_in(NAMESPACE))
def test_scrapes_are_fresh_and_get_only(client: Client) -> None:
    client.get("/product/1/")
    first = samples(client.get("/metrics/").content.decode())
    client.get("/product/1/")
    second = samples(client.get("/metrics/").content.decode())
    key = ("cachekit_hits_total", (("layer", "memory"), ("namespace", NAMESPACE)))
    assert second[key] == first[key] + 1  # never served from a cache
    assert client.post("/metrics/").status_code == 405


@override_settings(ROOT_URLCONF=__name__)
def test_registry_follows_the_engine_and_is_not_the_global_one() -> None:
    from prometheus_client import REGISTRY

    registry = metrics_registry()
    assert registry is not REGISTRY
    assert metrics_registry() is registry  # registered once per engine
    with override_settings(CACHES=caches_in("other")):  # a new engine
        replaced = metrics_registry()
        assert replaced is not registry
        names = {s.labels.get("namespace") for m in replaced.collect() for s in m.samples}
        assert names == {"other"}
