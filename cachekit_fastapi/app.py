"""``CacheKit``: one object that wires cachekit into a FastAPI (or Starlette) app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from starlette.applications import Starlette

from cachekit_core import Cache, ConfigurationError
from cachekit_core.httpcache import HttpCache, HttpSettings

from .middleware import CacheMiddleware, UserFunc, http_settings
from .routes import above_message, check_routes, endpoints_of
from .routing import cache_endpoint

__all__ = ["CacheKit"]

F = TypeVar("F", bound=Callable[..., Any])


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
        self.app = app
        self.user = user
        app.add_middleware(CacheMiddleware, http=self.http, user=user)
        _close_with_lifespan(app, cache, self.check)

    def cache(self, ttl: float | None = None, **options: Any) -> Callable[[F], F]:
        """``cache_endpoint(ttl, **options)`` (see there for the options), which also raises
        at once when placed above ``@app.get(...)`` on this app's router (FastAPI registered
        the bare function)."""
        decorate = cache_endpoint(ttl, **options)

        def checked(endpoint: F) -> F:
            if id(endpoint) in endpoints_of(self.app.router):
                raise ConfigurationError(above_message(endpoint))
            return decorate(endpoint)

        return checked

    def check(self) -> None:
        """Raise ``ConfigurationError`` for a ``kit.cache`` that could never cache (above the
        route decorator, on a route without GET, ``per_user`` with nothing to identify the
        user). Run when the app starts (lifespan), and by the middleware on the first request
        (an app served without its lifespan)."""
        check_routes(self.app.router, user_known=self.user is not None)


def _close_with_lifespan(app: Starlette, cache: Cache, check: Callable[[], None]) -> None:
    """Wrap the app's lifespan (the user's own, or Starlette's default) so the cache closes
    after it (the user's shutdown code may still use the cache), and the routes are checked
    when it starts."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        # Connections open lazily on first use (no I/O at start-up); only closing is owed.
        try:
            check()  # every route is registered by now
            async with inner(app_) as state:
                yield state
        finally:
            await cache.aclose()

    app.router.lifespan_context = lifespan
