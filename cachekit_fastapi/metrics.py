"""A Prometheus scrape endpoint for a FastAPI (or Starlette) app's cache.

Needs the ``metrics`` extra (``pip install 'cachekit-web[metrics]'``)::

    kit = CacheKit(app, cache)
    add_metrics_endpoint(app, kit)  # GET /metrics, left out of the OpenAPI schema
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cachekit_core import Cache, ConfigurationError, register_metrics

from .app import CacheKit

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["add_metrics_endpoint", "metrics_route"]


def metrics_route(
    kit_or_cache: CacheKit | Cache,
    registry: CollectorRegistry | None = None,
    *,
    path: str = "/metrics",
) -> Route:
    """A ``GET path`` route serving ``registry`` in Prometheus' text format, with the cache's
    counters and loader latency registered in it.

    ``registry`` defaults to a new one of the route's own, so it never clashes with
    prometheus-client's global registry; pass ``prometheus_client.REGISTRY`` to serve your
    own metrics too. Responses say ``Cache-Control: no-store``, so the HTTP cache (and any
    proxy) never keeps a scrape."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    except ImportError as exc:
        raise ConfigurationError(
            "metrics_route needs prometheus-client: pip install 'cachekit-web[metrics]'"
        ) from exc
    cache = kit_or_cache.http.cache if isinstance(kit_or_cache, CacheKit) else kit_or_cache
    target = CollectorRegistry() if registry is None else registry
    register_metrics(cache, target)

    async def endpoint(request: Request) -> Response:
        # Reading the engine's counters does no I/O: fine on the event loop.
        return Response(
            generate_latest(target),
            media_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )

    return Route(path, endpoint, methods=["GET"], include_in_schema=False, name="cachekit_metrics")


def add_metrics_endpoint(
    app: Starlette,
    kit_or_cache: CacheKit | Cache,
    path: str = "/metrics",
    *,
    registry: CollectorRegistry | None = None,
) -> Route:
    """Mount ``metrics_route(kit_or_cache, registry, path=path)`` on ``app``; returns it."""
    route = metrics_route(kit_or_cache, registry, path=path)
    app.router.routes.append(route)
    return route
