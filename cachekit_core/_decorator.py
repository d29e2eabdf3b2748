"""``@cache.cached``: keys bound from the function's signature, a tiny L1 hot path."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .keys import stable_repr
from .policy import Policy
from .templates import TagSpec as TagSpec
from .templates import check_template, compile_tags, indexed

if TYPE_CHECKING:
    from .engine import Engine


class _Binder:
    """Maps a call's ``(args, kwargs)`` to ``{parameter: value}``, fast for plain calls."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters.values())
        self.names = tuple(p.name for p in params)
        self.plain = all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.plain and not kwargs and len(args) == len(self.names):
            return dict(zip(self.names, args, strict=True))
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments


def _key_builder(
    func: Callable[..., Any], template: str | None, binder: _Binder
) -> tuple[
    Callable[[tuple[Any, ...], dict[str, Any]], str], Callable[[tuple[Any, ...]], str] | None
]:
    """Return ``(key_of(args, kwargs), fast_key_of(args) or None)``.

    The fast form serves calls passing every parameter positionally: ``"user:{user_id}"``
    becomes ``"user:{0[0]}".format(args)``, one C call and no signature binding (this runs
    on every L1 hit).
    """
    if template is None:
        prefix = f"{func.__module__}.{func.__qualname__}:"

        def default_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            bound = binder(args, kwargs)
            return prefix + stable_repr(tuple(bound.values()), tuple(bound))

        return default_key, None
    fields = check_template(template, binder.names)
    fmt = template.format_map

    def key_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return fmt(binder(args, kwargs))

    if fields is None or not binder.plain:
        return key_of, None
    return key_of, indexed(template, lambda _, field: f"0[{binder.names.index(field)}]").format


def _tags_builder(
    tags: TagSpec, binder: _Binder
) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[str, ...]]:
    """``tags=`` compiled by ``templates.compile_tags``, taking a call's ``(args, kwargs)``
    (bound only when the tags depend on them: this runs on every miss)."""
    compiled = compile_tags(tags, binder.names)
    if isinstance(compiled, tuple):
        return lambda args, kwargs: compiled
    make = compiled
    return lambda args, kwargs: make(binder(args, kwargs))


_WRAPPER_TEMPLATE = """
def _ck_make(_ck_data, _ck_clock, _ck_local, _ck_current, _ck_resolve, _ck_key, _ck_policy,
             _ck_func, _ck_fast, _ck_arity, _ck_repr, _ck_names, {defaults}):
    {kind}def wrapper({params}):
        _ck_k = {key_expr}
        try:
            _ck_e = _ck_data[_ck_k]
        except KeyError:
            _ck_e = None
        if (
            _ck_e is not None
            and _ck_clock() < _ck_e.local_fresh_until
            and (not _ck_e.tags or _ck_current(_ck_e))
        ):
            _ck_local.hits += 1
            return _ck_e.value
        return {await_}_ck_resolve(_ck_k, lambda: _ck_func({call}), _ck_policy({policy}))
    return wrapper
"""

# The generic form, for signatures with *args, **kwargs or keyword-only parameters.
_GENERIC = {
    "params": "*_ck_a, **_ck_kw",
    "key_expr": (
        "_ck_fast(_ck_a) if not _ck_kw and len(_ck_a) == _ck_arity else _ck_key(_ck_a, _ck_kw)"
    ),
    "call": "*_ck_a, **_ck_kw",
    "policy": "_ck_a, _ck_kw",
}


def _make_wrapper(
    func: Callable[..., Any],
    template: str | None,
    binder: _Binder,
    namespace: dict[str, Any],
    is_async: bool,
) -> Callable[..., Any]:
    """Generate the wrapper. For plain positional-or-keyword signatures it has the
    function's own signature (as dataclasses and attrs generate their methods), so an L1 hit
    packs no ``*args/**kwargs``; anything else gets the generic form."""
    params = list(binder.signature.parameters.values())
    names = [p.name for p in params]
    args_tuple = f"({names[0]},)" if len(names) == 1 else f"({', '.join(names)})"
    form: dict[str, str] | None = None
    if binder.plain and not any(name.startswith("_ck_") for name in names):
        if template is None:
            prefix = f"{func.__module__}.{func.__qualname__}:"
            form = {"key_expr": f"{prefix!r} + _ck_repr({args_tuple}, _ck_names)"}
        elif (fields := check_template(template, binder.names)) is not None:
            namespace["_ck_fmt"] = indexed(template, lambda i, _: str(i)).format
            form = {"key_expr": f"_ck_fmt({', '.join(fields)})"}
    defaults: dict[str, Any] = {}
    if form is None:
        form = _GENERIC
    else:
        defaults = {
            f"_ck_d{i}": p.default for i, p in enumerate(params) if p.default is not p.empty
        }
        form["params"] = ", ".join(
            f"{p.name}=_ck_d{i}" if p.default is not p.empty else p.name
            for i, p in enumerate(params)
        )
        form["call"] = ", ".join(names)
        form["policy"] = f"{args_tuple}, {{}}"
    source = _WRAPPER_TEMPLATE.format(
        defaults=", ".join([*defaults, "_ck_fmt=None"]),
        kind="async " if is_async else "",
        await_="await " if is_async else "",
        **form,
    )
    scope: dict[str, Any] = {}
    exec(compile(source, f"<cachekit wrapper of {func.__qualname__}>", "exec"), scope)
    wrapper: Callable[..., Any] = scope["_ck_make"](**namespace, **defaults)
    return wrapper


def cached(
    cache: Engine,
    *,
    ttl: float | None,
    key: str | None,
    tags: TagSpec,
    stale_ttl: float,
    negative_ttl: float | None,
    early_refresh: float | None,
    lock: bool,
) -> Callable[[Callable[..., Any]], Any]:
    def decorate(func: Callable[..., Any]) -> Any:
        binder = _Binder(func)
        make_key, fast_key = _key_builder(func, key, binder)
        # arity -1 never matches len(args): calls then always take make_key.
        arity = len(binder.names) if fast_key is not None else -1
        fast: Callable[..., str] = fast_key or make_key
        make_tags = _tags_builder(tags, binder)
        clock = cache.clock
        local = cache.local
        # Early refresh needs the entry's age on every hit: it takes the full path, as does a
        # cache without L1 (an empty dict makes every hot-path lookup miss).
        data: Any = local.data if local is not None and early_refresh is None else {}

        def policy(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Policy:
            return Policy(
                ttl, make_tags(args, kwargs), stale_ttl, negative_ttl, early_refresh, lock
            )

        is_async = inspect.iscoroutinefunction(func)
        namespace = {
            "_ck_data": data,
            "_ck_clock": clock,
            "_ck_local": local,
            "_ck_current": cache.tags_current,
            "_ck_resolve": cache.aresolve if is_async else cache.resolve,
            "_ck_key": make_key,
            "_ck_policy": policy,
            "_ck_func": func,
            "_ck_fast": fast,
            "_ck_arity": arity,
            "_ck_repr": stable_repr,
            "_ck_names": binder.names,
        }
        wrapper: Any = functools.wraps(func)(_make_wrapper(func, key, binder, namespace, is_async))

        def invalidate(*args: Any, **kwargs: Any) -> bool:
            """Drop the entry these arguments map to, everywhere."""
            return cache.delete(make_key(args, kwargs))

        async def ainvalidate(*args: Any, **kwargs: Any) -> bool:
            return await cache.adelete(make_key(args, kwargs))

        wrapper.invalidate = invalidate
        wrapper.ainvalidate = ainvalidate
        wrapper.key = lambda *args, **kwargs: make_key(args, kwargs)
        wrapper.cache = cache
        return wrapper

    return decorate
