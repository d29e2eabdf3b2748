"""Tag (and key) templates: one compiler, one rule set and one error for every decorator.

``@cache.cached``, FastAPI's ``kit.cache`` and Django's ``cache_view`` all compile their
``tags=`` here, so a spec gives the same tags, or the same ``ConfigurationError`` with the same
message, whichever decorator it is given to. ``@cached``'s key templates are checked here too.

The rules:

- ``tags=`` is a list (any iterable) of templates, or a callable; ``None`` or ``[]`` means no
  tags. One string is an error (it would be taken as a list of one-character templates).
- A template is a ``str.format`` string whose every field names a parameter, bare (``{pk}``)
  or followed by attribute and index access (``{user.id}``, ``{ids[0]}``, ``{d[key]}``), with
  an optional conversion (``!r``, ``!s``, ``!a``) and format spec (``{pk:05d}``; a field nested
  in the spec follows the same rule). Positional (``{0}``) and empty (``{}``) fields are errors.
- A callable receives, by name, only the parameters it declares (all of them if it takes
  ``**kwargs``). Each declared parameter without a default must be a parameter; none may be
  positional-only. It returns an iterable of strings: one string, or a tag that is not a
  string, is an error.
- Every error is a ``ConfigurationError``, raised when decorating. Where the parameters are
  known only at call time (a Django view's URL kwargs), a template or callable naming a
  parameter the call lacks raises at the call, with the same message; syntax errors are still
  raised when decorating. A callable's result is checked at each call that computes tags.
"""

from __future__ import annotations

import functools
import inspect
import re
import string
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeAlias

from .exceptions import ConfigurationError

__all__ = ["TagMaker", "TagSpec", "check_template", "compile_tags", "indexed"]

#: What ``tags=`` accepts: templates, or a callable receiving the parameters it declares.
TagSpec: TypeAlias = Iterable[str] | Callable[..., Iterable[str]] | None
#: A compiled spec: the call's arguments (``{parameter: value}``) to its tags.
TagMaker: TypeAlias = Callable[[Mapping[str, Any]], tuple[str, ...]]

# A parameter name, then any number of ``.attribute`` and ``[index]`` accesses.
_FIELD = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*|\[[^\]]+\])*")
_CONVERSIONS = frozenset({"r", "s", "a"})
_FIELD_RULE = (
    "a field names a parameter, bare or with .attribute and [index] access "
    "({pk}, {user.id}, {ids[0]})"
)
_parse = string.Formatter().parse


def check_template(
    template: str, names: Collection[str], what: str = "key"
) -> tuple[str, ...] | None:
    """Check ``template`` against the parameter ``names``; raise ``ConfigurationError`` if it
    breaks a rule. Return its fields, in order, when all are bare names (no attribute, index,
    conversion or spec): ``indexed`` can then turn it into a positional format string."""
    roots, bare = _fields(template, what)
    for name in roots:
        if name not in names:
            raise _unknown_field(what, template, name, names)
    return roots if bare else None


def indexed(template: str, field: Callable[[int, str], str]) -> str:
    """``template`` (whose fields are all bare, see ``check_template``) with literal braces
    escaped again and its ``i``-th field ``{name}`` replaced by ``{<field(i, name)>}``:
    ``indexed("u:{pk}", lambda i, name: f"0[{i}]")`` is ``"u:{0[0]}"``."""
    parts: list[str] = []
    position = 0
    for literal, name, _, _ in _parse(template):
        parts.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is not None:
            parts.append(f"{{{field(position, name)}}}")
            position += 1
    return "".join(parts)


def compile_tags(spec: TagSpec, names: Collection[str] | None) -> tuple[str, ...] | TagMaker:
    """Compile a ``tags=`` spec against the parameter ``names`` (``None``: known only at call
    time), raising ``ConfigurationError`` if it breaks a rule.

    Returns the tags themselves when they do not depend on the arguments (the caller needs
    no binding then), else a function of the call's arguments ``{parameter: value}``.
    """
    if spec is None:
        return ()
    if callable(spec):
        return _compile_callable(spec, names)
    if isinstance(spec, str):
        raise ConfigurationError(
            f"tags= takes a list of templates or a callable, not one string ({spec!r})"
        )
    try:
        templates = tuple(spec)
    except TypeError:
        raise ConfigurationError(
            f"tags= takes a list of templates or a callable, not {type(spec).__name__}"
        ) from None
    checks: list[tuple[str, str]] = []  # (template, parameter) in order, for call-time names
    for template in templates:
        roots, _ = _fields(template, "tag")
        for name in roots:
            if names is not None and name not in names:
                raise _unknown_field("tag", template, name, names)
            checks.append((template, name))
    if not checks:
        return tuple(template.format_map({}) for template in templates)  # "{{" is "{"
    formats = tuple(template.format_map for template in templates)
    if names is not None:
        if len(formats) == 1:
            only = formats[0]
            return lambda arguments: (only(arguments),)
        return lambda arguments: tuple([fmt(arguments) for fmt in formats])

    def make(arguments: Mapping[str, Any]) -> tuple[str, ...]:
        for template, name in checks:
            if name not in arguments:
                raise _unknown_field("tag", template, name, arguments)
        return tuple([fmt(arguments) for fmt in formats])

    return make


def _compile_callable(fn: Callable[..., Iterable[str]], names: Collection[str] | None) -> TagMaker:
    label = f"tags callable {_name(fn)}"
    try:
        params = _parameters(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{label}: its signature cannot be read ({exc})") from None
    takes_all = False
    wanted: list[str] = []
    required: list[str] = []
    for param in params:
        if param.kind is param.VAR_KEYWORD:
            takes_all = True
        elif param.kind is param.POSITIONAL_ONLY:
            if param.default is param.empty:
                raise ConfigurationError(
                    f"{label} has the positional-only parameter {param.name!r}: "
                    "it is called with the parameters it declares, by name"
                )
        elif param.kind is not param.VAR_POSITIONAL:
            wanted.append(param.name)
            if param.default is param.empty:
                required.append(param.name)
    if names is not None:
        for name in required:
            if name not in names:
                raise _unknown_parameter(label, name, names)
    at_call = () if names is not None else tuple(required)
    chosen = tuple(wanted)

    def make(arguments: Mapping[str, Any]) -> tuple[str, ...]:
        for name in at_call:
            if name not in arguments:
                raise _unknown_parameter(label, name, arguments)
        if takes_all:
            return _as_tags(fn(**arguments), label)
        return _as_tags(fn(**{n: arguments[n] for n in chosen if n in arguments}), label)

    return make


def _parameters(fn: Callable[..., Any]) -> tuple[inspect.Parameter, ...]:
    """``fn``'s parameters. A function's (or a bound method's function's) are read once:
    Django's ``CacheViewMixin`` compiles its bound ``get_cache_tags`` on every request."""
    if inspect.ismethod(fn):
        params = _function_parameters(fn.__func__)
        if params and params[0].kind in (
            params[0].POSITIONAL_ONLY,
            params[0].POSITIONAL_OR_KEYWORD,
        ):
            return params[1:]  # what inspect.signature does for a bound method
    elif inspect.isfunction(fn):
        return _function_parameters(fn)
    return tuple(inspect.signature(fn).parameters.values())


@functools.lru_cache(maxsize=256)
def _function_parameters(fn: Callable[..., Any]) -> tuple[inspect.Parameter, ...]:
    return tuple(inspect.signature(fn).parameters.values())


def _as_tags(result: object, label: str) -> tuple[str, ...]:
    if isinstance(result, str):
        raise ConfigurationError(f"{label} returned one string ({result!r}), not a list of strings")
    try:
        items = iter(result)  # type: ignore[call-overload]
    except TypeError:
        raise ConfigurationError(
            f"{label} returned {type(result).__name__}, not a list of strings"
        ) from None
    tags = tuple(items)
    for tag in tags:
        if not isinstance(tag, str):
            raise ConfigurationError(
                f"{label} returned the tag {tag!r} ({type(tag).__name__}), not only strings"
            )
    return tags


def _fields(template: object, what: str) -> tuple[tuple[str, ...], bool]:
    """Check the template's syntax; return the parameters its fields name, in order, and
    whether every field is a bare name."""
    if not isinstance(template, str):
        raise ConfigurationError(
            f"{what} templates are strings, not {type(template).__name__} ({template!r})"
        )
    roots: list[str] = []
    bare = True

    def scan(text: str, depth: int) -> None:
        nonlocal bare
        try:
            parts = list(_parse(text))
        except ValueError as exc:
            raise ConfigurationError(f"{what} template {template!r} is malformed: {exc}") from None
        for _, field, spec, conversion in parts:
            if field is None:
                continue
            _check_field(what, template, field, conversion)
            root = field.partition(".")[0].partition("[")[0]
            roots.append(root)
            bare = bare and root == field and not spec and not conversion
            if spec and "{" in spec:
                if depth:
                    raise ConfigurationError(
                        f"{what} template {template!r} is malformed: fields nest one level deep"
                    )
                scan(spec, depth + 1)

    scan(template, 0)
    return tuple(roots), bare


def _check_field(what: str, template: str, field: str, conversion: str | None) -> None:
    if not _FIELD.fullmatch(field):
        raise ConfigurationError(
            f"{what} template {template!r} has the field {{{field}}}: {_FIELD_RULE}"
        )
    if conversion is not None and conversion not in _CONVERSIONS:
        raise ConfigurationError(
            f"{what} template {template!r} has the conversion !{conversion}: use !r, !s or !a"
        )


def _unknown_field(
    what: str, template: str, name: str, names: Collection[str]
) -> ConfigurationError:
    return ConfigurationError(
        f"{what} template {template!r} names {name!r}, which is not a parameter ({_listing(names)})"
    )


def _unknown_parameter(label: str, name: str, names: Collection[str]) -> ConfigurationError:
    return ConfigurationError(
        f"{label} takes {name!r}, which is not a parameter ({_listing(names)})"
    )


def _listing(names: Collection[str]) -> str:
    return f"parameters: {', '.join(sorted(names))}" if names else "there are no parameters"


def _name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else type(fn).__qualname__
