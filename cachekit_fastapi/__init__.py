"""cachekit's FastAPI (and Starlette / plain ASGI) adapter.

- ``CacheKit(app, cache)``: installs ``CacheMiddleware`` and closes the cache with the app's
  lifespan; ``@kit.cache(ttl, tags=..., per_user=...)`` under ``@app.get`` caches an endpoint.
- ``CacheMiddleware``: a pure ASGI HTTP response cache (HIT/MISS/STALE/BYPASS, ETag and 304,
  tag invalidation) driven by ``cachekit_core.httpcache``.
- ``SessionMiddleware`` / ``Session``: server-side sessions stored in a cachekit ``Cache``, a
  drop-in for Starlette's signed-cookie sessions.
- ``add_metrics_endpoint`` / ``metrics_route``: a Prometheus ``/metrics`` endpoint.
- ``cachekit_fastapi.sqlalchemy.watch`` (``sqlalchemy`` extra, not imported here): invalidate
  table and row tags when a SQLAlchemy transaction commits.
"""

from .app import CacheKit
from .metrics import add_metrics_endpoint, metrics_route
from .middleware import CacheMiddleware
from .sessions import Session, SessionMiddleware

__all__ = [
    "CacheKit",
    "CacheMiddleware",
    "Session",
    "SessionMiddleware",
    "add_metrics_endpoint",
    "metrics_route",
]
