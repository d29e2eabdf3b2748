"""Which route a request goes to, and what the cache may do for it (decided once per route).

``CacheMiddleware`` matches the request against the app's routes *before* routing (the same
``route.matches(scope)`` the router calls, first full match wins) and asks ``plan_of`` what the
route allows:

- not cached (no ``kit.cache``, and not shared-cache mode, or a route whose hits could skip a
  dependency): the request passes through untouched, no lookup, no header, no hashing;
- ``fast``: the route's whole dependency tree (app, router, route, endpoint) is empty apart
  from path and query parameters, so a hit may be answered before routing: nothing the app
  would run before the endpoint is skipped;
- otherwise a hit is answered by the ``kit.cache`` wrapper, inside the route, once FastAPI has
  resolved every dependency (authentication, validation, rate limits...).

Request headers and cookies the tree declares (``Header()``, ``Cookie()``) are sent in
``Vary``, so they are part of the key. A route guarded by a security scheme
(``fastapi.security.*``, ``Security(...)``) is stored only with ``per_user=True`` (keyed by a
digest of the credentials the scheme reads) or ``public=True``.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.routing import Host, Match, Mount, Router
from starlette.types import Scope

from cachekit_core import ConfigurationError
from cachekit_core.httpcache import ViewOptions

__all__ = [
    "ENDPOINT_ATTR",
    "Credential",
    "EndpointOptions",
    "RoutePlan",
    "check_routes",
    "match_route",
    "plan_of",
    "router_of",
]

try:  # FastAPI is optional: a Starlette app has no dependency trees
    from fastapi.dependencies.models import Dependant
    from fastapi.dependencies.utils import get_flat_params
    from fastapi.security.api_key import APIKeyBase
    from fastapi.security.base import SecurityBase
    from fastapi.security.http import HTTPBase
    from fastapi.security.oauth2 import OAuth2
    from fastapi.security.open_id_connect_url import OpenIdConnect
except ImportError:  # pragma: no cover - FastAPI is installed with the extra
    Dependant = SecurityBase = None  # type: ignore[assignment,misc]


#: The attribute of a ``kit.cache`` wrapper holding its ``EndpointOptions``.
ENDPOINT_ATTR = "__cachekit_endpoint__"


@dataclass(frozen=True, slots=True)
class EndpointOptions:
    """What ``kit.cache(...)`` was given (the tags are bound per call, from the arguments)."""

    ttl: float | None
    cache_control: str | None
    stale_ttl: float
    per_user: bool
    public: bool
    query_params: Collection[str] | None

    def view(self, tags: tuple[str, ...] = ()) -> ViewOptions:
        return ViewOptions(
            ttl=self.ttl,
            tags=tags,
            cache_control=self.cache_control,
            stale_ttl=self.stale_ttl,
            per_user=self.per_user,
            query_params=self.query_params,
        )


# Every wrapper made, to find one placed above ``@app.get`` (registered nowhere, while the
# function it wraps is) when the app starts.
_WRAPPERS: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def register_wrapper(wrapper: Callable[..., Any]) -> None:
    """Remember a ``kit.cache`` wrapper (weakly), for ``check_routes``."""
    _WRAPPERS.add(wrapper)


def misplaced_wrappers(registered: set[int]) -> Iterator[Callable[..., Any]]:
    """The wrapped endpoints registered (ids in ``registered``) without their wrapper."""
    for wrapper in list(_WRAPPERS):
        inner = getattr(wrapper, "__wrapped__", None)
        if id(wrapper) not in registered and inner is not None and id(inner) in registered:
            yield inner


@dataclass(frozen=True, slots=True)
class Credential:
    """Where a security scheme reads its credentials: ``header``/``cookie``/``query``, name."""

    where: str
    name: str


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """What the cache may do for one route."""

    options: EndpointOptions | None  # kit.cache's options; None: not decorated
    fast: bool  # no dependency beyond path and query parameters: hits before routing
    vary: tuple[str, ...] = ()  # request headers the tree reads ("Cookie" for Cookie())
    guarded: bool = False  # a security scheme or Security(...) in the tree
    credentials: tuple[Credential, ...] = ()  # where its schemes read credentials
    opaque_scheme: bool = False  # a scheme whose credentials cachekit cannot locate
    methods: frozenset[str] | None = None  # None: any method


_MAX_DEPTH = 8  # Mounts followed into sub-applications


def router_of(app: object) -> Router | None:
    """The router of a Starlette/FastAPI app (or the router itself); None for other apps."""
    if isinstance(app, Router):
        return app
    router = getattr(app, "router", None)
    return router if isinstance(router, Router) else None


def _candidates(routes: Iterable[Any]) -> Iterator[Any]:
    """The routes in the order the router tries them. FastAPI keeps an included router as one
    entry whose ``effective_candidates()`` are its routes with the include's prefix and
    dependencies (older FastAPI copies them into the parent's list instead)."""
    for route in routes:
        effective = getattr(route, "effective_candidates", None)
        if callable(effective) and getattr(route, "original_router", None) is not None:
            yield from _candidates(effective())
        else:
            yield route


def match_route(router: Router, scope: Scope, depth: int = 0) -> Any | None:
    """The route the router will hand this http ``scope`` to (the first full match, through
    Mounts of Starlette/FastAPI apps), or None (no full match: 404, 405, redirect)."""
    probe = dict(scope)
    if isinstance(probe.get("fastapi"), dict):  # FastAPI notes its match there: keep ours off
        probe["fastapi"] = dict(probe["fastapi"])
    for candidate in _candidates(router.routes):
        try:
            match, child = candidate.matches(probe)
        except Exception:  # a route that cannot be probed outside its router: not ours
            return None
        if match != Match.FULL:
            continue
        route = getattr(candidate, "starlette_route", None) or candidate
        if isinstance(route, Mount | Host):
            inner = router_of(route.app)
            if inner is None:
                return route  # an opaque mounted app (static files...): no dependencies
            if depth >= _MAX_DEPTH:
                return None
            return match_route(inner, {**probe, **child}, depth + 1)
        return route
    return None


# Plans by id(route), with the route kept so a recycled id never reads a stale plan.
_PLANS: dict[int, tuple[object, RoutePlan]] = {}
_PLANS_MAX = 4096


def plan_of(route: object) -> RoutePlan:
    """The route's plan, computed from its endpoint and dependency tree on first use."""
    key = id(route)
    known = _PLANS.get(key)
    if known is not None and known[0] is route:
        return known[1]
    plan = _plan(route)
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[key] = (route, plan)
    return plan


def _plan(route: object) -> RoutePlan:
    endpoint = getattr(route, "endpoint", None)
    options = getattr(endpoint, ENDPOINT_ATTR, None) if endpoint is not None else None
    if not isinstance(options, EndpointOptions):
        options = None
    methods = getattr(route, "methods", None)
    allowed = frozenset(methods) if methods else None
    dependant = getattr(route, "dependant", None)
    if Dependant is None or not isinstance(dependant, Dependant):
        # A Starlette route or a mounted app: nothing runs before the endpoint.
        return RoutePlan(options, fast=True, methods=allowed)
    fast = not _reads_more_than_the_url(dependant) and not dependant.dependencies
    vary: dict[str, None] = {}
    guarded, opaque = False, False
    credentials: dict[Credential, None] = {}
    for node in _tree(dependant):
        for name in _header_names(node):
            vary.setdefault("-".join(part.capitalize() for part in name.split("-")), None)
        if node.cookie_params:
            vary.setdefault("Cookie", None)
        if node.own_oauth_scopes or node.security_scopes_param_name:
            guarded = True
        scheme = _scheme_of(node.call)
        if scheme is not None:
            guarded = True
            found = _credential(scheme)
            if found is None:
                opaque = True
            else:
                credentials.setdefault(found, None)
    return RoutePlan(
        options,
        fast=fast,
        vary=tuple(vary),
        guarded=guarded,
        credentials=tuple(credentials),
        opaque_scheme=opaque,
        methods=allowed,
    )


def _tree(root: Any) -> Iterator[Any]:
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.dependencies)


def _reads_more_than_the_url(node: Any) -> bool:
    """Whether FastAPI resolves anything for the endpoint itself but path and query
    parameters: headers, cookies, a body, security scopes. (``Request``, ``Response`` or
    ``BackgroundTasks`` parameters are handed over as they are: nothing runs or is checked
    for them before the endpoint, which a hit skips anyway.)"""
    return bool(
        node.header_params
        or node.cookie_params
        or node.body_params
        or node.websocket_param_name
        or node.security_scopes_param_name
    )


def _header_names(node: Any) -> list[str]:
    """The request headers a node's ``Header()`` parameters may read (models flattened): every
    spelling FastAPI may look up (alias, name, validation aliases, with ``_`` as ``-``), so
    the key never misses one."""
    if not node.header_params:
        return []
    names: dict[str, None] = {}
    for field in get_flat_params(Dependant(header_params=list(node.header_params))):
        spellings = [getattr(field, "alias", None), getattr(field, "name", None)]
        validation = getattr(getattr(field, "field_info", None), "validation_alias", None)
        if isinstance(validation, str):
            spellings.append(validation)
        for choice in getattr(validation, "choices", ()) or ():
            if isinstance(choice, str):
                spellings.append(choice)
        for spelling in spellings:
            if isinstance(spelling, str) and spelling:
                names.setdefault(spelling.lower(), None)
                names.setdefault(spelling.replace("_", "-").lower(), None)
    return list(names)


def _scheme_of(call: Callable[..., Any] | None) -> Any | None:
    if call is None or SecurityBase is None:
        return None
    unwrapped = inspect.unwrap(call) if callable(call) else call
    return unwrapped if isinstance(unwrapped, SecurityBase) else None


def _credential(scheme: Any) -> Credential | None:
    if isinstance(scheme, APIKeyBase):
        where = str(getattr(scheme.model.in_, "value", scheme.model.in_))
        return Credential(where, scheme.model.name)
    if isinstance(scheme, HTTPBase | OAuth2 | OpenIdConnect):
        return Credential("header", "authorization")
    return None


def _walk(router: Router, depth: int = 0) -> Iterator[Any]:
    """Every route of ``router``, through included routers and Mounts of Starlette apps."""
    for candidate in _candidates(router.routes):
        route = getattr(candidate, "starlette_route", None) or candidate
        if isinstance(route, Mount | Host):
            inner = router_of(route.app)
            if inner is not None and depth < _MAX_DEPTH:
                yield from _walk(inner, depth + 1)
            continue
        yield route


def endpoints_of(router: Router) -> set[int]:
    """The ids of the endpoints registered on ``router`` (for ``kit.cache`` above ``@app.get``)."""
    return {id(getattr(route, "endpoint", None)) for route in _walk(router)}


def check_routes(router: Router, *, user_known: bool) -> None:
    """Raise ``ConfigurationError`` for a ``kit.cache`` that could never cache: placed above
    ``@app.get`` (FastAPI registered the undecorated function), on a route with no GET, or
    ``per_user=True`` with nothing to identify the user (no ``user=`` and no security scheme
    whose credentials cachekit can read)."""
    routes = list(_walk(router))
    registered = {id(getattr(route, "endpoint", None)) for route in routes}
    for wrapper in misplaced_wrappers(registered):
        raise ConfigurationError(above_message(wrapper))
    for route in routes:
        plan = plan_of(route)
        options = plan.options
        if options is None:
            continue
        where = f"{_name(getattr(route, 'endpoint', None))} ({getattr(route, 'path', '?')})"
        if plan.methods is not None and not plan.methods & {"GET", "HEAD"}:
            raise ConfigurationError(
                f"@kit.cache on {where}, a {'/'.join(sorted(plan.methods))} route: only GET "
                "and HEAD responses are cached (an unsafe method invalidates the URL's cached "
                "GET by itself). Remove @kit.cache from it, or put it on the GET route."
            )
        if options.per_user and not user_known and not plan.credentials:
            raise ConfigurationError(
                f"@kit.cache(per_user=True) on {where}, but nothing identifies the user: pass "
                "CacheKit(app, cache, user=lambda scope: ...) (e.g. the session's user id), or "
                "guard the route with a fastapi.security scheme (its credentials key the page)."
            )
        if options.per_user and plan.opaque_scheme and not user_known:
            raise ConfigurationError(
                f"@kit.cache(per_user=True) on {where}: its security scheme is not one whose "
                "credentials cachekit can read (APIKey*, HTTP*, OAuth2*, OpenIdConnect): pass "
                "CacheKit(app, cache, user=lambda scope: ...) to identify the user."
            )


def above_message(endpoint: Callable[..., Any]) -> str:
    return (
        f"@kit.cache is above @app.get(...) on {_name(endpoint)}: FastAPI registered the "
        "function without the cache, so it would never be cached. Put @kit.cache *under* the "
        "route decorator:\n    @app.get(...)\n    @kit.cache(...)\n    def view(...): ..."
    )


def _name(endpoint: object) -> str:
    name = getattr(endpoint, "__qualname__", None) or getattr(endpoint, "__name__", None)
    module = getattr(endpoint, "__module__", None)
    return f"{module}.{name}" if module and name else repr(endpoint)
