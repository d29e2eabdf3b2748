"""``cache_view`` and ``CacheViewMixin``: declare how a view's pages are cached.

Once the request is routed, the decorator looks the view's page up (keyed by the URL, the
active language and time zone, and the view's options) and serves it, or runs the view;
``CacheMiddleware`` stores the rendered page on the way out. Without the middleware the
decorator stores it itself, as Django's ``cache_page`` does. Decorated views carry their
options as ``view.cachekit_view``.

Works on function views (sync or ``async def``), on ``method_decorator(cache_view(...),
name="dispatch")`` and, through ``CacheViewMixin``, on class-based views, async ones included.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from asgiref.sync import iscoroutinefunction
from django.db import models as db_models
from django.http import HttpRequest

from cachekit_core.httpcache import ViewOptions, query_allow_list
from cachekit_core.templates import TagMaker, compile_tags

from .invalidation import tag_for
from .middleware import abind, bind

__all__ = ["CacheViewMixin", "cache_view"]

V = TypeVar("V", bound=Callable[..., Any])
TagsArg = Sequence[str] | Callable[..., Iterable[str]] | None
ModelsArg = Iterable[type[db_models.Model] | str]


@dataclass(frozen=True, slots=True)
class _Spec:
    ttl: float | None
    models: tuple[str, ...]  # model tags, resolved once
    # Compiled by cachekit_core.templates. A view's parameters are ``request`` and its URL
    # kwargs, known per request: a name the request lacks raises then (ConfigurationError).
    tags: tuple[str, ...] | TagMaker
    cache_control: str | None
    stale_ttl: float
    per_user: bool
    query_params: frozenset[str] | None = None
    csrf: bool = True

    def options(
        self, request: HttpRequest, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> ViewOptions:
        tags = self.tags
        if not isinstance(tags, tuple):
            tags = tags({"request": request, **kwargs})
        return ViewOptions(
            ttl=self.ttl,
            tags=tuple(dict.fromkeys(self.models + tags)),
            cache_control=self.cache_control,
            stale_ttl=self.stale_ttl,
            per_user=self.per_user,
            query_params=self.query_params,
        )

    def call(
        self, view: Callable[..., Any], request: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not isinstance(request, HttpRequest):
            raise TypeError(
                f"cache_view didn't receive an HttpRequest (got {type(request).__name__}): on a "
                'method use method_decorator(cache_view(...), name="dispatch") or CacheViewMixin'
            )
        if _in_event_loop():
            # Only an async class-based view's (sync) dispatch is called on the event loop:
            # Django runs sync views in a worker thread. Its handler returns a coroutine.
            return self.acall(view, request, args, kwargs)
        return bind(
            request,
            self.options(request, args, kwargs),
            lambda: view(request, *args, **kwargs),
            csrf=self.csrf,
        )

    async def acall(
        self, view: Callable[..., Any], request: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        async def render() -> Any:
            result = view(request, *args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return await abind(request, self.options(request, args, kwargs), render, csrf=self.csrf)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _spec(
    ttl: float | None,
    models: ModelsArg,
    tags: TagsArg,
    cache_control: str | None,
    stale_ttl: float,
    per_user: bool,
    query_params: Iterable[str] | None = None,
    csrf: bool = True,
) -> _Spec:
    return _Spec(
        ttl,
        tuple(tag_for(m) for m in models),
        compile_tags(tags, None),
        cache_control,
        float(stale_ttl),
        per_user,
        query_allow_list(query_params),
        bool(csrf),
    )


@overload
def cache_view(ttl: V) -> V: ...
@overload
def cache_view(
    ttl: float | None = None,
    *,
    models: ModelsArg = (),
    tags: TagsArg = None,
    cache_control: str | None = None,
    stale_ttl: float = 0,
    per_user: bool = False,
    query_params: Iterable[str] | None = None,
    csrf: bool = True,
) -> Callable[[V], V]: ...
def cache_view(
    ttl: Any = None,
    *,
    models: ModelsArg = (),
    tags: TagsArg = None,
    cache_control: str | None = None,
    stale_ttl: float = 0,
    per_user: bool = False,
    query_params: Iterable[str] | None = None,
    csrf: bool = True,
) -> Any:
    """Cache a view's pages (stored by ``CacheMiddleware``, or by the decorator on its own).

    ``ttl``: seconds (default: the ``s-maxage``/``max-age`` of ``cache_control``, else the
    cache's default). ``models``: model classes (or ``"app_label.Model"``) whose saves
    invalidate the page. ``tags``: templates formatted with the view's URL kwargs and
    ``request`` (``"product:{pk}"``), or a callable receiving those it declares by name
    (``lambda request, pk: [...]``); the rules are ``cachekit_core.templates``'.
    ``cache_control``: sent when the response sets none. ``stale_ttl``: serve the old page that
    long past expiry while one request re-renders. ``per_user``: key by the logged-in user and
    send ``Cache-Control: private`` (requests with a session cookie otherwise bypass).
    ``query_params``: the only query parameters that are part of the page's key (e.g.
    ``["page", "sort"]``); requests with others are answered from, and stored as, the page of
    their listed ones, so the view must not depend on the rest (see ``ViewOptions``).
    ``csrf``: a page rendered with ``{% csrf_token %}`` is stored with a placeholder for the
    token (without the CSRF cookie) and served with each client's own token and cookie;
    ``csrf=False``: such pages are not stored.
    """
    if callable(ttl):  # bare @cache_view
        return cache_view()(ttl)
    spec = _spec(ttl, models, tags, cache_control, stale_ttl, per_user, query_params, csrf)

    def decorator(view: V) -> V:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
                return await spec.acall(view, request, args, kwargs)

            async_wrapper.cachekit_view = spec  # type: ignore[attr-defined]
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            return spec.call(view, request, args, kwargs)

        wrapper.cachekit_view = spec  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


class CacheViewMixin:
    """``cache_view`` for class-based views, configured by class attributes.

    ``cache_tags`` is a list of templates or a callable ``(request, *args, **kwargs)``
    (a plain function or ``staticmethod``); override ``get_cache_tags`` to use ``self``.
    Put the mixin first in the bases so it wraps the whole ``dispatch``.
    """

    cache_ttl: float | None = None
    cache_models: ModelsArg = ()
    cache_tags: TagsArg = None
    cache_control: str | None = None
    cache_stale_ttl: float = 0
    cache_per_user: bool = False
    cache_query_params: Iterable[str] | None = None
    cache_csrf: bool = True

    def get_cache_tags(self, request: HttpRequest, *args: Any, **kwargs: Any) -> list[str]:
        """The view's extra tags (beyond ``cache_models``) for this request."""
        tags = inspect.getattr_static(self, "cache_tags")
        if isinstance(tags, staticmethod):
            tags = tags.__func__
        if not tags:
            return []
        options = _spec(None, (), tags, None, 0, False).options(request, args, kwargs)
        return list(options.tags)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        spec = _spec(
            self.cache_ttl,
            self.cache_models,
            self.get_cache_tags,
            self.cache_control,
            self.cache_stale_ttl,
            self.cache_per_user,
            self.cache_query_params,
            self.cache_csrf,
        )
        return spec.call(super().dispatch, request, args, kwargs)  # type: ignore[misc]
