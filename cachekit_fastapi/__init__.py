"""cachekit's fastapi adapter (under construction: see the README for what is available)."""

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
