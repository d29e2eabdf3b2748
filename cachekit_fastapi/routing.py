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
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

from starlette.responses import Response as StarletteResponse

from cachekit_core.httpcache import Response, ViewOptions

from .middleware import PendingLookup, current_lookup, encode_headers

__all__ = ["TagSpec", "cache_endpoint"]

F = TypeVar("F", bound=Callable[..., Any])
#: Tag templates formatted with the endpoint's arguments (``"products:{pid}"``), or a
#: callable receiving the endpoint's parameters by name (only those it declares).
TagSpec = Sequence[str] | Callable[..., Iterable[str]]


def cache_endpoint(
    *,
    ttl: float | None = None,
    tags: TagSpec = (),
    cache_control: str | None = None,
    stale_ttl: float = 0.0,
    per_user: bool = False,
) -> Callable[[F], F]:
    """Cache the decorated endpoint's responses (place it *under* ``@app.get(...)``)."""

    def decorate(endpoint: F) -> F:
        signature = inspect.signature(endpoint)
        make_tags = _tag_maker(tags, signature)

        def bind(pending: PendingLookup, args: Any, kwargs: Any) -> ViewOptions:
            arguments = signature.bind_partial(*args, **kwargs)
            arguments.apply_defaults()
            pending.bound = True
            return ViewOptions(
                ttl=ttl,
                tags=make_tags(arguments.arguments),
                cache_control=cache_control,
                stale_ttl=stale_ttl,
                per_user=per_user,
            )

        # Match FastAPI's own test (it unwraps too), so the endpoint runs where it expects.
        if inspect.iscoroutinefunction(endpoint) or inspect.iscoroutinefunction(
            inspect.unwrap(endpoint)
        ):

            @functools.wraps(endpoint)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                pending = current_lookup.get()
                if pending is not None and not pending.bound:
                    view = bind(pending, args, kwargs)
                    pending.lookup = await pending.http.abind_view(pending.lookup, view)
                    if pending.lookup.response is not None:  # a per-user hit
                        return to_starlette(pending.lookup.response, pending)
                result = endpoint(*args, **kwargs)
                return await result if inspect.isawaitable(result) else result

            return cast(F, async_view)

        @functools.wraps(endpoint)
        def sync_view(*args: Any, **kwargs: Any) -> Any:
            pending = current_lookup.get()
            if pending is not None and not pending.bound:
                view = bind(pending, args, kwargs)
                # In FastAPI's threadpool: the sync twin does the same I/O without a loop.
                pending.lookup = pending.http.bind_view(pending.lookup, view)
                if pending.lookup.response is not None:
                    return to_starlette(pending.lookup.response, pending)
            return endpoint(*args, **kwargs)

        return cast(F, sync_view)

    return decorate


def to_starlette(response: Response, pending: PendingLookup) -> StarletteResponse:
    """A finished core response as a Starlette response (headers sent exactly as given)."""
    out = StarletteResponse(content=response.body, status_code=response.status)
    out.raw_headers = encode_headers(response, pending.lookup.request.method)
    return out


def _tag_maker(
    tags: TagSpec, signature: inspect.Signature
) -> Callable[[Mapping[str, Any]], tuple[str, ...]]:
    if callable(tags):
        return _callable_tags(tags)
    if isinstance(tags, str):
        raise TypeError("tags must be a list of templates, not one string")
    templates = tuple(tags)
    for template in templates:
        for _, field, _, _ in string.Formatter().parse(template):
            root = (field or "").split(".", 1)[0].split("[", 1)[0]
            if field is not None and root not in signature.parameters:
                # Fail at import time rather than on the first request.
                raise ValueError(f"tag template {template!r} names {root!r}, not a parameter")
    return lambda arguments: tuple(t.format_map(arguments) for t in templates)


def _callable_tags(
    tags: Callable[..., Iterable[str]],
) -> Callable[[Mapping[str, Any]], tuple[str, ...]]:
    params = inspect.signature(tags).parameters.values()
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    names = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]

    def make(arguments: Mapping[str, Any]) -> tuple[str, ...]:
        chosen = (
            dict(arguments) if takes_all else {n: arguments[n] for n in names if n in arguments}
        )
        result = tags(**chosen)
        if isinstance(result, str):
            raise TypeError("the tags callable must return a list of strings, not one string")
        return tuple(result)

    return make
