"""``CacheKit``: one object that wires cachekit into a FastAPI (or Starlette) app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette

from cachekit_core import Cache
from cachekit_core.httpcache import HttpCache, HttpSettings

from .middleware import CacheMiddleware, UserFunc, http_settings
from .routing import cache_endpoint

__all__ = ["CacheKit"]


class CacheKit:
    """Install the HTTP cache middleware on ``app`` and close ``cache`` with its lifespan.

    ``kit.cache(...)`` decorates endpoints; ``kit.http`` is the ``HttpCache`` the middleware
    uses (e.g. ``await kit.http.ainvalidate_url(...)``), ``kit.http.cache`` the ``Cache``.

    Order matters because the middleware added last runs first. Add these *before* CacheKit
    (inside the cache): ``GZipMiddleware``, so ETags and Vary describe the compressed bytes
    (C10), and ``@app.middleware("http")``/``BaseHTTPMiddleware``, whose re-streamed bodies
    would otherwise never be stored. Add after it (outside) what every response needs even
    on a hit: CORS, sessions (cachekit's ``SessionMiddleware`` tells the cache when the
    session was read or changed).
    """

    def __init__(
        self,
        app: Starlette,
        cache: Cache,
        *,
        user: UserFunc | None = None,
        settings: HttpSettings | None = None,
        **options: Any,
    ) -> None:
        # The settings as CacheMiddleware takes them: HttpSettings fields by name, applied to
        # ``settings`` or to FastAPI's defaults (Starlette's session cookie name).
        self.http = HttpCache(cache, http_settings(settings, options, "CacheKit"))
        app.add_middleware(CacheMiddleware, http=self.http, user=user)
        _close_with_lifespan(app, cache)

    # kit.cache(ttl, tags=..., cache_control=..., stale_ttl=..., per_user=...): the middleware
    # finds the request's lookup by itself, so the decorator needs nothing of this kit.
    cache = staticmethod(cache_endpoint)


def _close_with_lifespan(app: Starlette, cache: Cache) -> None:
    """Wrap the app's lifespan (the user's own, or Starlette's default) so the cache closes
    after it: the user's shutdown code may still use the cache."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        # Connections open lazily on first use (no I/O at start-up); only closing is owed.
        try:
            async with inner(app_) as state:
                yield state
        finally:
            await cache.aclose()

    app.router.lifespan_context = lifespan
