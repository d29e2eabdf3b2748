"""``{% cachefragment %}``: Django's ``{% cache %}`` on the cachekit engine, with invalidation.

::

    {% load cachekit %}
    {% cachefragment 300 "sidebar" request.user.pk models="shop.Product" tags="menu,a" %}
        ... expensive ...
    {% endcachefragment %}

Arguments: the TTL in seconds, kept in full (``None``: the ``TIMEOUT`` of the engine's
``CACHES`` alias), the fragment name (quoted or bare, never a variable), then any vary-on
expressions, as ``{% cache %}`` takes them.
``models=`` (labels, comma-separated, or model classes) and ``tags=`` (comma-separated, or a
list) attach invalidation tags: saving a model or ``invalidate_tags(...)`` re-renders the
fragment. Concurrent renders of one missing fragment run the template once (single-flight).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template
from django.template.base import FilterExpression, NodeList, Parser, Token

from .. import conf
from .._transactions import uncommitted_writes
from ..invalidation import tag_for

register = template.Library()

_OPTIONS = ("models", "tags")


def _names(value: Any) -> list[Any]:
    """A comma-separated string or an iterable of names (or model classes) as a list."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, type) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def fragment_key(name: str, vary_on: Iterable[Any]) -> str:
    """The engine key of a fragment: each part length-prefixed, so none can forge another."""
    parts = [name, *(str(v) for v in vary_on)]
    return "fragment:" + "|".join(f"{len(p)}:{p}" for p in parts)


class CacheFragmentNode(template.Node):
    def __init__(
        self,
        nodelist: NodeList,
        ttl: FilterExpression,
        name: str,
        vary_on: list[FilterExpression],
        options: dict[str, FilterExpression],
    ) -> None:
        self.nodelist = nodelist
        self.ttl = ttl
        self.name = name
        self.vary_on = vary_on
        self.options = options

    def render(self, context: template.Context) -> str:
        ttl = self.ttl.resolve(context)
        if ttl is not None:
            try:
                ttl = float(ttl)
            except (TypeError, ValueError) as exc:
                raise template.TemplateSyntaxError(
                    f"cachefragment {self.name!r}: the TTL {ttl!r} is not a number"
                ) from exc
        tags = [tag_for(m) for m in _names(self._option("models", context))]
        tags += [str(t) for t in _names(self._option("tags", context))]
        if uncommitted_writes():
            return str(self.nodelist.render(context))  # rows a rollback may undo: not stored
        key = fragment_key(self.name, (v.resolve(context) for v in self.vary_on))
        # get_or_set: a missing fragment is rendered once, whoever else asks for it meanwhile.
        return str(
            conf.engine().get_or_set(
                key, lambda: str(self.nodelist.render(context)), ttl=ttl, tags=tags
            )
        )

    def _option(self, name: str, context: template.Context) -> Any:
        expression = self.options.get(name)
        return None if expression is None else expression.resolve(context)


@register.tag("cachefragment")
def do_cachefragment(parser: Parser, token: Token) -> CacheFragmentNode:
    """``{% cachefragment ttl name [vary_on ...] [models=...] [tags=...] %}``."""
    nodelist = parser.parse(("endcachefragment",))
    parser.delete_first_token()
    bits = token.split_contents()
    if len(bits) < 3:
        raise template.TemplateSyntaxError(f"{bits[0]!r} takes at least a TTL and a fragment name")
    name = bits[2]
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "'\"":
        name = name[1:-1]
    vary_on: list[FilterExpression] = []
    options: dict[str, FilterExpression] = {}
    for bit in bits[3:]:
        option, sep, value = bit.partition("=")
        if sep and option in _OPTIONS:
            if option in options:
                raise template.TemplateSyntaxError(f"{bits[0]!r} got {option}= twice")
            options[option] = parser.compile_filter(value)
        else:
            vary_on.append(parser.compile_filter(bit))
    return CacheFragmentNode(nodelist, parser.compile_filter(bits[1]), name, vary_on, options)
