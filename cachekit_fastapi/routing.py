"""``kit.cache``: mark an endpoint as cacheable without changing what FastAPI sees of it.

The wrapper keeps the endpoint's signature (``functools.wraps`` sets ``__wrapped__``, which
FastAPI follows for dependencies, validation and OpenAPI) and its kind: an ``async def``
endpoint gets an ``async def`` wrapper, a plain ``def`` endpoint a plain wrapper that FastAPI
runs in its threadpool (context variables are copied there, so the lookup is visible).

The wrapper carries its options (``ENDPOINT_ATTR``): ``CacheMiddleware`` reads them when it
matches the route, before routing. At call time, FastAPI has resolved every dependency: the
wrapper binds the view's options (tags computed from the endpoint's arguments) to the lookup
the middleware made, or, for a route whose hits must not skip its dependencies, makes the
lookup itself and answers a hit from here; the middleware stores what the endpoint renders.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from starlette.responses import Response as StarletteResponse

from cachekit_core.httpcache import BYPASS, Lookup, Response, ViewOptions, query_allow_list
from cachekit_core.templates import TagSpec, compile_tags

from .middleware import PendingLookup, current_lookup, encode_headers
from .routes import ENDPOINT_ATTR, EndpointOptions, register_wrapper

__all__ = ["TagSpec", "cache_endpoint"]

F = TypeVar("F", bound=Callable[..., Any])


def cache_endpoint(
    ttl: float | None = None,
    *,
    tags: TagSpec = (),
    cache_control: str | None = None,
    stale_ttl: float = 0.0,
    per_user: bool = False,
    public: bool = False,
    query_params: Iterable[str] | None = None,
) -> Callable[[F], F]:
    """Cache an endpoint's responses (``kit.cache``): put it *under* ``@app.get(...)``.

    ``ttl``: seconds (default: ``s-maxage``/``max-age`` of ``cache_control``, else the
    cache's default); ``tags``: templates formatted with the endpoint's arguments, or a
    callable receiving them by name; ``cache_control`` is sent unless the endpoint sets
    its own; ``stale_ttl``: serve STALE that long past expiry while one request
    re-renders; ``per_user``: key by the user (``CacheKit(user=...)``, and the credentials
    of the route's security scheme) and mark the response private; ``public``: the route is
    guarded by a security scheme but its response is the same for everyone it admits (a
    guarded route is otherwise never stored, unless ``per_user``); ``query_params``: the only
    query parameters that are part of the key (others are ignored for caching: the endpoint
    must not depend on them, see ``ViewOptions``).
    """
    if per_user and public:
        raise TypeError(
            "kit.cache(per_user=True, public=True): a page is either each user's own "
            "(per_user) or the same for everyone the route admits (public), not both"
        )
    options = EndpointOptions(
        ttl, cache_control, stale_ttl, per_user, public, query_allow_list(query_params)
    )

    def decorate(endpoint: F) -> F:
        tags_of = _tags_of(tags, inspect.signature(endpoint))

        def bind(args: Any, kwargs: Any) -> tuple[PendingLookup, ViewOptions] | None:
            """The step both wrappers share (no I/O): this request's pending lookup and the
            view options to bind to it, or None (no middleware, or an outer decorated endpoint
            already bound)."""
            pending = current_lookup.get()
            if pending is None or pending.bound:
                return None
            view_tags = tags_of(args, kwargs)
            pending.bound = True
            return pending, options.view(view_tags)

        def unguarded(pending: PendingLookup, view: ViewOptions) -> bool:
            """A deferred lookup the route may make: False for a route guarded by a security
            scheme that is neither per-user nor public (its page is never shared)."""
            plan = pending.plan
            if plan is None or not plan.guarded or options.per_user or options.public:
                return True
            lookup = pending.lookup
            pending.lookup = Lookup(lookup.request, view, BYPASS, since=lookup.since)
            pending.deferred = False
            return False

        # The twins differ only in the I/O call (the HttpCache's sync or async methods).
        # Match FastAPI's own test (it unwraps too), so the endpoint runs where it expects.
        if inspect.iscoroutinefunction(endpoint) or inspect.iscoroutinefunction(
            inspect.unwrap(endpoint)
        ):

            @functools.wraps(endpoint)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                bound = bind(args, kwargs)
                if bound is not None:
                    pending, view = bound
                    lookup, http = pending.lookup, pending.http
                    if not pending.deferred:
                        pending.lookup = await http.abind_view(lookup, view)
                    elif unguarded(pending, view):
                        # Dependencies resolved: only now may a hit be answered.
                        pending.lookup = await http.alookup(
                            lookup.request, view, since=lookup.since
                        )
                        pending.deferred = False
                    if pending.lookup.response is not None:  # a hit served in the route
                        return to_starlette(pending.lookup.response, pending)
                result = endpoint(*args, **kwargs)
                return await result if inspect.isawaitable(result) else result

            wrapper: Callable[..., Any] = async_view
        else:

            @functools.wraps(endpoint)
            def sync_view(*args: Any, **kwargs: Any) -> Any:
                bound = bind(args, kwargs)
                if bound is not None:
                    pending, view = bound
                    lookup, http = pending.lookup, pending.http
                    # In FastAPI's threadpool: the sync twins do the same I/O without a loop.
                    if not pending.deferred:
                        pending.lookup = http.bind_view(lookup, view)
                    elif unguarded(pending, view):
                        pending.lookup = http.lookup(lookup.request, view, since=lookup.since)
                        pending.deferred = False
                    if pending.lookup.response is not None:  # a hit served in the route
                        return to_starlette(pending.lookup.response, pending)
                return endpoint(*args, **kwargs)

            wrapper = sync_view

        setattr(wrapper, ENDPOINT_ATTR, options)
        register_wrapper(wrapper)
        return cast(F, wrapper)

    return decorate


def to_starlette(response: Response, pending: PendingLookup) -> StarletteResponse:
    """A finished core response as a Starlette response (headers sent exactly as given)."""
    out = StarletteResponse(content=response.body, status_code=response.status)
    out.raw_headers = encode_headers(response, pending.lookup.request.method)
    return out


def _tags_of(
    tags: TagSpec, signature: inspect.Signature
) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[str, ...]]:
    """``tags=`` compiled by ``cachekit_core.templates`` (its errors raise when decorating),
    taking the endpoint's ``(args, kwargs)``: bound only when the tags depend on them."""
    compiled = compile_tags(tags, signature.parameters)
    if isinstance(compiled, tuple):
        return lambda args, kwargs: compiled
    make = compiled

    def tags_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        arguments = signature.bind_partial(*args, **kwargs)
        arguments.apply_defaults()
        return make(arguments.arguments)

    return tags_of
