"""Prometheus export (cachekit_core/metrics.py) with a real registry and real Redis."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cachekit_core import Cache, ConfigurationError, register_metrics
from tests.support.redis_server import RedisServer


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_scrape_reports_layers_loader_and_breaker(redis_url: str) -> None:
    registry = CollectorRegistry()
    cache = Cache.from_url(redis_url, namespace="shop", secret_key="test-secret")
    register_metrics(cache, registry)
    cache.set("a", 1)
    assert cache.get("a") == 1  # L1 hit
    assert cache.get("missing") is None  # L1 miss, Redis miss
    assert cache.get_or_set("b", lambda: 2) == 2
    with pytest.raises(ZeroDivisionError):
        cache.get_or_set("c", lambda: 1 / 0)
    cache.invalidate_tags("t1", "t2")

    got = samples(registry)
    ns = ("namespace", "shop")
    stats = cache.stats()
    for layer in ("memory", "redis"):
        key = (("layer", layer), ns)
        assert got["cachekit_hits_total", key] == stats["layers"][layer]["hits"]
        assert got["cachekit_misses_total", key] == stats["layers"][layer]["misses"]
    assert got["cachekit_hits_total", (("layer", "memory"), ns)] >= 1
    assert got["cachekit_misses_total", (("layer", "redis"), ns)] >= 1
    assert got["cachekit_loader_calls_total", (ns,)] == 2
    assert got["cachekit_loader_errors_total", (ns,)] == 1
    assert got["cachekit_invalidations_total", (ns,)] == 2
    assert got["cachekit_invalidation_errors_total", (ns,)] == 0
    assert got["cachekit_corrupt_entries_total", (ns,)] == 0
    for name in ("stale_serves", "lock_waits", "lock_timeouts"):
        assert (f"cachekit_{name}_total", (ns,)) in got
    assert got["cachekit_circuit_state", (ns,)] == 0
    assert got["cachekit_circuit_opens_total", (ns,)] == 0
    assert (
        got["cachekit_entries", (("layer", "memory"), ns)] == stats["layers"]["memory"]["entries"]
    )
    text = generate_latest(registry).decode()
    assert "# TYPE cachekit_hits_total counter" in text
    assert "# TYPE cachekit_circuit_state gauge" in text
    # Loader latency: one successful and one failed loader call, observed by outcome.
    assert got["cachekit_loader_duration_seconds_count", (ns, ("outcome", "ok"))] == 1
    assert got["cachekit_loader_duration_seconds_count", (ns, ("outcome", "error"))] == 1
    register_metrics(cache, registry)  # registering again adds no second observer
    assert len(cache.load_observers) == 1
    cache.close()


def test_breaker_state_and_opens_follow_an_outage(private_redis: RedisServer) -> None:
    registry = CollectorRegistry()
    cache = Cache.from_url(
        private_redis.url, namespace="down", l1=False, breaker_cooldown=30, secret_key="test-secret"
    )
    register_metrics(cache, registry)
    cache.set("a", 1)
    private_redis.stop()
    for _ in range(5):
        assert cache.get("a") is None  # fails open; the breaker opens
    got = samples(registry)
    ns = ("namespace", "down")
    assert got["cachekit_circuit_state", (ns,)] == 2
    assert got["cachekit_circuit_opens_total", (ns,)] == 1
    assert got["cachekit_redis_errors_total", (ns,)] >= 1
    assert got["cachekit_redis_skipped_total", (ns,)] >= 1
    cache.close()


def test_several_caches_share_a_registry() -> None:
    registry = CollectorRegistry()
    one, two = Cache(namespace="one"), Cache(namespace="two")
    register_metrics(one, registry)
    register_metrics(one, registry)  # idempotent
    register_metrics(two, registry)
    one.set("k", 1)
    one.get("k")
    got = samples(registry)
    assert got["cachekit_hits_total", (("layer", "memory"), ("namespace", "one"))] == 1
    assert got["cachekit_hits_total", (("layer", "memory"), ("namespace", "two"))] == 0
    # No Redis layer, no breaker series.
    assert not any(name == "cachekit_circuit_state" for name, _ in got)
    with pytest.raises(ConfigurationError, match="namespace 'one'"):
        register_metrics(Cache(namespace="one"), registry)
