"""A Prometheus scrape endpoint for the engine of pages, fragments and invalidation
(``conf.engine()``: the ``CACHES`` alias named by ``CACHEKIT["CACHE"]``).

Add it to your URLs (needs the ``metrics`` extra, ``pip install 'cachekit-web[metrics]'``)::

    from cachekit_django.views import metrics

    urlpatterns = [path("metrics/", metrics)]

The view serves a registry of its own, not prometheus-client's global one, so it never clashes
with metrics the project registers itself. Counters are read from the engine at each scrape;
loader latency is observed from registration on, which happens at the first scrape unless
``metrics_registry()`` is called earlier (e.g. in your ``AppConfig.ready()``).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from cachekit_core import Cache, register_metrics

from . import conf

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["metrics", "metrics_registry"]

_lock = threading.Lock()
# The engine registered last (weakly: a closed engine must not stay alive) and its registry.
_registered: tuple[weakref.ref[Cache], CollectorRegistry] | None = None


def metrics_registry() -> CollectorRegistry:
    """The registry the ``metrics`` view serves, with ``conf.engine()`` registered in it.

    Settings changes (``override_settings`` in tests) replace the engine; the registry is then
    rebuilt for the new one, so a scrape never reports an engine that is no longer in use."""
    global _registered
    try:
        from prometheus_client import CollectorRegistry
    except ImportError as exc:
        raise ImproperlyConfigured(
            "cachekit_django.views.metrics needs prometheus-client: "
            "pip install 'cachekit-web[metrics]'"
        ) from exc
    cache = conf.engine()
    with _lock:
        if _registered is None or _registered[0]() is not cache:
            registry = CollectorRegistry()
            register_metrics(cache, registry)
            _registered = (weakref.ref(cache), registry)
        return _registered[1]


@never_cache  # Cache-Control: no-store (and friends): scrapes must always be fresh
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition text for the engine's counters and loader latency."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    body = generate_latest(metrics_registry())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
