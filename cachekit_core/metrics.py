"""Prometheus metrics for caches, read from ``cache.stats()`` at scrape time.

``register_metrics(cache)`` needs the ``metrics`` extra (``pip install 'cachekit-web[metrics]'``);
prometheus-client is imported only then, so the engine never depends on it. Nothing is
counted twice: the engine already keeps counters, and a custom collector turns them into
samples when Prometheus scrapes, so the hot path pays nothing for metrics.

Exported (every series labelled ``namespace``; hits and misses also ``layer``)::

    cachekit_hits_total / cachekit_misses_total{layer}     per layer (memory, redis)
    cachekit_loader_calls_total, cachekit_loader_errors_total
    cachekit_stale_serves_total, cachekit_early_refreshes_total
    cachekit_lock_waits_total, cachekit_lock_timeouts_total, cachekit_flight_waits_total
    cachekit_corrupt_entries_total, cachekit_tag_misses_total
    cachekit_invalidations_total, cachekit_invalidation_errors_total
    cachekit_redis_errors_total, cachekit_redis_skipped_total
    cachekit_circuit_state             gauge: 0 closed, 1 half-open, 2 open
    cachekit_circuit_opens_total       times the breaker opened
    cachekit_pending_invalidations     gauge: invalidations waiting for Redis to come back
    cachekit_entries{layer="memory"}   gauge: entries held in process

Several caches (distinct namespaces) may share one registry: they share one collector.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector, CollectorRegistry

    from .engine import Engine

__all__ = ["CIRCUIT_STATES", "CacheCollector", "register_metrics"]

# Ordered by severity, so alerts can use `cachekit_circuit_state > 0`.
CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}

# (metric name without _total, stats() key, help text): engine-wide counters.
_COUNTERS = (
    ("cachekit_loader_calls", "loader_calls", "Loader (or cached function) calls."),
    ("cachekit_loader_errors", "loader_errors", "Loader calls that raised."),
    ("cachekit_stale_serves", "stale_serves", "Stale values served (SWR or stale-if-error)."),
    ("cachekit_early_refreshes", "early_refreshes", "Probabilistic early refreshes started."),
    ("cachekit_lock_waits", "lock_waits", "Waits for another process's loader lock."),
    ("cachekit_lock_timeouts", "lock_timeouts", "Lock waits that gave up and loaded anyway."),
    ("cachekit_flight_waits", "flight_waits", "Waits for an in-process single-flight loader."),
    ("cachekit_corrupt_entries", "corrupt", "Unreadable, unsigned or forged payloads."),
    ("cachekit_tag_misses", "tag_misses", "Entries found but invalidated by a tag."),
    ("cachekit_invalidations", "invalidations", "Tags invalidated."),
    ("cachekit_invalidation_errors", "invalidation_errors", "Invalidations that failed."),
    ("cachekit_redis_errors", "errors", "Failed Redis calls."),
)

_LOCK = threading.Lock()
_COLLECTORS: weakref.WeakKeyDictionary[Any, CacheCollector] = weakref.WeakKeyDictionary()
_LOADER_HISTOGRAMS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


class CacheCollector:
    """A prometheus-client collector reading the stats of one or more caches on scrape."""

    def __init__(self) -> None:
        # Weak: registering metrics must not keep a closed cache (and its pools) alive.
        self._caches: weakref.WeakValueDictionary[str, Engine] = weakref.WeakValueDictionary()

    def holds(self, cache: Engine) -> bool:
        return self._caches.get(cache.namespace) is cache

    def add(self, cache: Engine) -> None:
        current = self._caches.get(cache.namespace)
        if current is not None and current is not cache:
            raise ConfigurationError(
                f"another cache with namespace {cache.namespace!r} is already registered in "
                "this Prometheus registry: give each cache its own namespace"
            )
        self._caches[cache.namespace] = cache

    def describe(self) -> Iterable[Metric]:
        # Names only (no stats read): lets the registry detect clashes at registration.
        return _families([])

    def collect(self) -> Iterable[Metric]:
        caches = sorted(self._caches.items())
        return _families([cache.stats() for _, cache in caches])


def _families(all_stats: list[dict[str, Any]]) -> list[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    ns = ["namespace"]
    hits = CounterMetricFamily("cachekit_hits", "Reads served by a layer.", labels=[*ns, "layer"])
    misses = CounterMetricFamily(
        "cachekit_misses", "Reads a layer could not serve.", labels=[*ns, "layer"]
    )
    entries = GaugeMetricFamily(
        "cachekit_entries", "Entries held by an in-process layer.", labels=[*ns, "layer"]
    )
    counters = [(CounterMetricFamily(name, text, labels=ns), key) for name, key, text in _COUNTERS]
    skipped = CounterMetricFamily(
        "cachekit_redis_skipped", "Redis calls skipped while the breaker was open.", labels=ns
    )
    state = GaugeMetricFamily(
        "cachekit_circuit_state", "Redis circuit breaker: 0 closed, 1 half-open, 2 open.", labels=ns
    )
    opens = CounterMetricFamily(
        "cachekit_circuit_opens", "Times the Redis circuit breaker opened.", labels=ns
    )
    pending = GaugeMetricFamily(
        "cachekit_pending_invalidations",
        "Invalidations waiting to be replayed to Redis.",
        labels=ns,
    )
    for stats in all_stats:
        namespace = str(stats["namespace"])
        for layer, numbers in stats["layers"].items():
            hits.add_metric([namespace, layer], numbers["hits"])
            misses.add_metric([namespace, layer], numbers["misses"])
            if "entries" in numbers:
                entries.add_metric([namespace, layer], numbers["entries"])
        for family, key in counters:
            family.add_metric([namespace], stats[key])
        redis = stats["layers"].get("redis")
        if redis is not None:  # breaker series only exist for caches with a Redis layer
            skipped.add_metric([namespace], redis["skipped"])
            state.add_metric([namespace], CIRCUIT_STATES.get(redis["circuit"], 2))
            opens.add_metric([namespace], redis["circuit_opened"])
            pending.add_metric([namespace], redis["pending_invalidations"])
    return [hits, misses, entries, *(f for f, _ in counters), skipped, state, opens, pending]


def register_metrics(cache: Engine, registry: CollectorRegistry | None = None) -> CacheCollector:
    """Export ``cache``'s counters to Prometheus (``registry`` defaults to the global one).

    Calling it again for the same cache is a no-op; caches sharing a registry need distinct
    namespaces. Returns the registry's collector.
    """
    try:
        from prometheus_client import REGISTRY
    except ImportError as exc:
        raise ConfigurationError(
            "register_metrics needs prometheus-client: pip install 'cachekit-web[metrics]'"
        ) from exc
    from prometheus_client import Histogram

    target = REGISTRY if registry is None else registry
    with _LOCK:
        collector = _COLLECTORS.get(target)
        if collector is None:
            collector = CacheCollector()
            target.register(cast("Collector", collector))
            _COLLECTORS[target] = collector
            _LOADER_HISTOGRAMS[target] = Histogram(
                "cachekit_loader_duration_seconds",
                "Time spent in loader calls (cache misses and refreshes).",
                ["namespace", "outcome"],
                registry=target,
            )
        already = collector.holds(cache)
        collector.add(cache)
        if not already:
            histogram = _LOADER_HISTOGRAMS[target]
            ok = histogram.labels(cache.namespace, "ok")
            error = histogram.labels(cache.namespace, "error")
            cache.load_observers.append(
                lambda seconds, failed: (error if failed else ok).observe(seconds)
            )
    return collector
