"""``kit.cache``: mark an endpoint as cacheable without changing what FastAPI sees of it.

The wrapper keeps the endpoint's signature (``functools.wraps`` sets ``__wrapped__``, which
FastAPI follows for dependencies, validation and OpenAPI) and its kind: an ``async def``
endpoint gets an ``async def`` wrapper, a plain ``def`` endpoint a plain wrapper that FastAPI
runs in its threadpool (context variables are copied there, so the lookup is visible).

At call time the wrapper only binds the view's options (tags computed from the endpoint's
arguments) to the lookup ``CacheMiddleware`` published; the middleware stores the response.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from starlette.responses import Response as StarletteResponse

from cachekit_core.httpcache import Response, ViewOptions, query_allow_list
from cachekit_core.templates import TagSpec, compile_tags

from .middleware import PendingLookup, current_lookup, encode_headers

__all__ = ["TagSpec", "cache_endpoint"]

F = TypeVar("F", bound=Callable[..., Any])


def cache_endpoint(
    ttl: float | None = None,
    *,
    tags: TagSpec = (),
    cache_control: str | None = None,
    stale_ttl: float = 0.0,
    per_user: bool = False,
    query_params: Iterable[str] | None = None,
) -> Callable[[F], F]:
    """Cache an endpoint's responses (``kit.cache``): put it *under* ``@app.get(...)``.

    ``ttl``: seconds (default: ``s-maxage``/``max-age`` of ``cache_control``, else the
    cache's default); ``tags``: templates formatted with the endpoint's arguments, or a
    callable receiving them by name; ``cache_control`` is sent unless the endpoint sets
    its own; ``stale_ttl``: serve STALE that long past expiry while one request
    re-renders; ``per_user``: key by ``user(scope)`` and mark the response private;
    ``query_params``: the only query parameters that are part of the key (others are
    ignored for caching: the endpoint must not depend on them, see ``ViewOptions``).
    """
    params = query_allow_list(query_params)

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
            view = ViewOptions(
                ttl=ttl,
                tags=view_tags,
                cache_control=cache_control,
                stale_ttl=stale_ttl,
                per_user=per_user,
                query_params=params,
            )
            return pending, view

        # The twins differ only in the I/O call (the HttpCache's sync or async bind_view).
        # Match FastAPI's own test (it unwraps too), so the endpoint runs where it expects.
        if inspect.iscoroutinefunction(endpoint) or inspect.iscoroutinefunction(
            inspect.unwrap(endpoint)
        ):

            @functools.wraps(endpoint)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                bound = bind(args, kwargs)
                if bound is not None:
                    pending, view = bound
                    pending.lookup = await pending.http.abind_view(pending.lookup, view)
                    if pending.lookup.response is not None:  # a per-user hit
                        return to_starlette(pending.lookup.response, pending)
                result = endpoint(*args, **kwargs)
                return await result if inspect.isawaitable(result) else result

            return cast(F, async_view)

        @functools.wraps(endpoint)
        def sync_view(*args: Any, **kwargs: Any) -> Any:
            bound = bind(args, kwargs)
            if bound is not None:
                pending, view = bound
                # In FastAPI's threadpool: the sync twin does the same I/O without a loop.
                pending.lookup = pending.http.bind_view(pending.lookup, view)
                if pending.lookup.response is not None:  # a per-user hit
                    return to_starlette(pending.lookup.response, pending)
            return endpoint(*args, **kwargs)

        return cast(F, sync_view)

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
