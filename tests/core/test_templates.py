"""``cachekit_core.templates``: the one compiler behind ``tags=`` of ``@cache.cached``, FastAPI's
``kit.cache`` and Django's ``cache_view``.

The contract: a spec gives the same tags, or the same ``ConfigurationError`` with the same
message, whichever decorator it is given to. Each decorator is driven through its public
surface with the same parameters (``request``, ``pid``, ``q``) and the same arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from django.views import View

from cachekit_core import Cache, ConfigurationError
from cachekit_core.templates import check_template, compile_tags, indexed
from cachekit_django import CacheViewMixin, cache_view
from cachekit_fastapi.middleware import current_lookup
from cachekit_fastapi.routing import cache_endpoint

REQUEST = RequestFactory().get("/p/7")
PID = 7
Q = ["y", "z"]
PARAMETERS = "parameters: pid, q, request"
FIELD_RULE = (
    "a field names a parameter, bare or with .attribute and [index] access "
    "({pk}, {user.id}, {ids[0]})"
)


@pytest.fixture
def cache() -> Iterator[Cache]:
    cache = Cache()
    yield cache
    cache.close()


# --------------------------------------------------------------------------- the three decorators


def core_tags(spec: Any, expected: tuple[str, ...]) -> tuple[str, ...]:
    """``@cache.cached``. The engine has no API listing an entry's tags, so they are probed:
    the expected tags (in order) whose invalidation recomputes the entry; a tag outside the
    spec must not."""
    cache = Cache()
    calls: list[int] = []
    try:
        # A request has no stable text form: the key names what identifies the call.
        @cache.cached(ttl=60, key="fn:{pid}:{q}", tags=spec)
        def fn(request: Any, pid: int, q: Any = "x") -> int:
            calls.append(pid)
            return len(calls)

        fn(REQUEST, PID, Q)
        attached = []
        for tag in (*expected, "not-a-tag-of-the-spec"):
            before = len(calls)
            cache.invalidate_tags(tag)
            fn(REQUEST, PID, Q)
            if len(calls) > before:
                attached.append(tag)
        return tuple(attached)
    finally:
        cache.close()


class _Pending:
    """What FastAPI's ``CacheMiddleware`` publishes, reduced to what the wrapper touches."""

    def __init__(self) -> None:
        self.bound = False
        self.deferred = False  # the lookup was made before routing
        self.plan = None
        self.lookup = SimpleNamespace(response=None)
        self.http = self
        self.views: list[Any] = []

    def bind_view(self, lookup: Any, view: Any) -> Any:
        self.views.append(view)
        return lookup


def fastapi_tags(spec: Any, expected: tuple[str, ...]) -> tuple[str, ...]:
    """``kit.cache`` (``cache_endpoint``): the tags of the ``ViewOptions`` it binds."""

    def endpoint(request: Any, pid: int, q: Any = "x") -> str:
        return "ok"

    wrapper = cache_endpoint(ttl=60, tags=spec)(endpoint)
    pending = _Pending()
    token = current_lookup.set(pending)  # type: ignore[arg-type]
    try:
        assert wrapper(request=REQUEST, pid=PID, q=Q) == "ok"
    finally:
        current_lookup.reset(token)
    tags: tuple[str, ...] = pending.views[0].tags
    return tags


def django_tags(spec: Any, expected: tuple[str, ...]) -> tuple[str, ...]:
    """``cache_view`` (called without the middleware, its view just runs, after computing the
    tags), then the same spec as ``CacheViewMixin.cache_tags``, whose tags are public."""

    def view(request: HttpRequest, pid: int, q: Any) -> HttpResponse:
        return HttpResponse("ok")

    decorated = cache_view(ttl=60, tags=spec)(view)
    assert decorated(REQUEST, pid=PID, q=Q).content == b"ok"

    class Mixin(CacheViewMixin, View):
        cache_tags = staticmethod(spec) if callable(spec) else spec

    return tuple(Mixin().get_cache_tags(REQUEST, pid=PID, q=Q))


DECORATORS: dict[str, Callable[[Any, tuple[str, ...]], tuple[str, ...]]] = {
    "cached": core_tags,
    "kit.cache": fastapi_tags,
    "cache_view": django_tags,
}


def positional_only(pid: int, /) -> list[str]:
    return [str(pid)]


def all_names(**arguments: Any) -> list[str]:
    return sorted(arguments)


TAG_CASES = [
    pytest.param(["p:{pid}", "all"], ("p:7", "all"), id="bare-names"),
    pytest.param(("p:{pid}:{q[0]}",), ("p:7:y",), id="a-tuple"),
    pytest.param(["{q[1]}", "{pid.real}", "m:{request.method}"], ("z", "7", "m:GET"), id="access"),
    pytest.param(["p:{pid:03d}", "r:{q!r}"], ("p:007", "r:['y', 'z']"), id="spec-conversion"),
    pytest.param(["{pid:{q[0]}<3}"], ("7yy",), id="field-nested-in-spec"),
    pytest.param(["{{literal}}", "x"], ("{literal}", "x"), id="escaped-braces"),
    pytest.param([], (), id="empty"),
    pytest.param(None, (), id="none"),
    pytest.param(lambda pid: [f"p:{pid}"], ("p:7",), id="callable"),
    pytest.param(lambda pid, extra="e": (f"{pid}{extra}",), ("7e",), id="callable-default"),
    pytest.param(lambda request, *args: [request.method], ("GET",), id="callable-star-args"),
    pytest.param(all_names, ("pid", "q", "request"), id="callable-kwargs-gets-all"),
    pytest.param(lambda q: iter(q), ("y", "z"), id="callable-iterator"),
]


@pytest.mark.parametrize("decorator", DECORATORS)
@pytest.mark.parametrize(("spec", "expected"), TAG_CASES)
def test_the_same_spec_gives_the_same_tags_everywhere(
    decorator: str, spec: Any, expected: tuple[str, ...]
) -> None:
    assert DECORATORS[decorator](spec, expected) == expected


ERROR_CASES = [
    pytest.param(
        ["ok", "p:{pk}"],
        f"tag template 'p:{{pk}}' names 'pk', which is not a parameter ({PARAMETERS})",
        id="unknown-name",
    ),
    pytest.param(
        ["{user.id}"],
        f"tag template '{{user.id}}' names 'user', which is not a parameter ({PARAMETERS})",
        id="unknown-root-of-an-access",
    ),
    pytest.param(
        ["{pid:{width}}"],
        f"tag template '{{pid:{{width}}}}' names 'width', which is not a parameter ({PARAMETERS})",
        id="unknown-name-nested-in-spec",
    ),
    pytest.param(["p:{}"], f"tag template 'p:{{}}' has the field {{}}: {FIELD_RULE}", id="empty"),
    pytest.param(
        ["p:{0}"], f"tag template 'p:{{0}}' has the field {{0}}: {FIELD_RULE}", id="positional"
    ),
    pytest.param(
        ["{pid.}"], f"tag template '{{pid.}}' has the field {{pid.}}: {FIELD_RULE}", id="bad-access"
    ),
    pytest.param(
        ["p:{pid"],
        "tag template 'p:{pid' is malformed: expected '}' before end of string",
        id="malformed",
    ),
    pytest.param(
        ["{pid:{q:{pid}}}"],
        "tag template '{pid:{q:{pid}}}' is malformed: fields nest one level deep",
        id="nested-too-deep",
    ),
    pytest.param(
        ["{pid!x}"],
        "tag template '{pid!x}' has the conversion !x: use !r, !s or !a",
        id="conversion",
    ),
    pytest.param(
        "p:{pid}",
        "tags= takes a list of templates or a callable, not one string ('p:{pid}')",
        id="one-string",
    ),
    pytest.param(42, "tags= takes a list of templates or a callable, not int", id="not-a-list"),
    pytest.param(["ok", 1], "tag templates are strings, not int (1)", id="not-a-string"),
    pytest.param(
        lambda pk: [],
        f"tags callable <lambda> takes 'pk', which is not a parameter ({PARAMETERS})",
        id="callable-unknown-parameter",
    ),
    pytest.param(
        positional_only,
        "tags callable positional_only has the positional-only parameter 'pid': "
        "it is called with the parameters it declares, by name",
        id="callable-positional-only",
    ),
    pytest.param(
        lambda pid: f"p:{pid}",
        "tags callable <lambda> returned one string ('p:7'), not a list of strings",
        id="callable-returns-one-string",
    ),
    pytest.param(
        lambda pid: None,
        "tags callable <lambda> returned NoneType, not a list of strings",
        id="callable-returns-none",
    ),
    pytest.param(
        lambda pid: ["ok", pid],
        "tags callable <lambda> returned the tag 7 (int), not only strings",
        id="callable-returns-a-non-string",
    ),
]


@pytest.mark.parametrize(("spec", "message"), ERROR_CASES)
def test_the_same_bad_spec_gives_the_same_error_everywhere(spec: Any, message: str) -> None:
    seen = {}
    for name, run in DECORATORS.items():
        with pytest.raises(ConfigurationError) as raised:
            run(spec, ())
        seen[name] = str(raised.value)
    assert seen == dict.fromkeys(DECORATORS, message)


# --------------------------------------------------------------------------- when errors raise


@pytest.mark.parametrize(
    "spec", [["p:{pk}"], lambda pk: []], ids=["template", "callable"]
)  # fmt: skip
def test_known_parameters_fail_when_decorating(spec: Any, cache: Cache) -> None:
    def fn(pid: int) -> int:
        return pid

    with pytest.raises(ConfigurationError, match="'pk', which is not a parameter"):
        cache.cached(tags=spec)(fn)
    with pytest.raises(ConfigurationError, match="'pk', which is not a parameter"):
        cache_endpoint(tags=spec)(fn)


def test_django_checks_syntax_when_decorating_and_url_kwargs_per_request() -> None:
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return HttpResponse("ok")

    with pytest.raises(ConfigurationError, match="has the field"):
        cache_view(tags=["p:{0}"])  # positional URL args have no name: not a template field
    with pytest.raises(ConfigurationError, match="not one string"):
        cache_view(tags="p:{pk}")
    decorated = cache_view(tags=["p:{pk}"])(view)  # URL kwargs are known per request
    assert decorated(REQUEST, pk=1).content == b"ok"
    with pytest.raises(
        ConfigurationError,
        match=r"^tag template 'p:\{pk\}' names 'pk', which is not a parameter "
        r"\(parameters: pid, request\)$",
    ):
        decorated(REQUEST, pid=1)


# --------------------------------------------------------------------------- the compiler itself


def test_tags_independent_of_the_arguments_are_returned_as_they_are() -> None:
    assert compile_tags(None, ()) == ()
    assert compile_tags([], ["a"]) == ()
    assert compile_tags(["x", "{{y}}"], ["a"]) == ("x", "{y}")
    assert compile_tags((t for t in ["g"]), None) == ("g",)  # any iterable, read once


def test_compiled_templates_format_the_arguments() -> None:
    make = compile_tags(["a:{a}", "b:{b.real}", "c"], ["a", "b"])
    assert callable(make)
    assert make({"a": 1, "b": 2}) == ("a:1", "b:2", "c")
    one = compile_tags(["a:{a}"], ["a"])
    assert callable(one) and one({"a": "x"}) == ("a:x",)


def test_names_known_at_call_time_are_checked_per_call() -> None:
    make = compile_tags(["a:{a}", "b:{b}"], None)
    assert callable(make)
    assert make({"a": 1, "b": 2, "c": 3}) == ("a:1", "b:2")
    with pytest.raises(ConfigurationError, match=r"'b:\{b\}' names 'b'.*\(parameters: a, c\)$"):
        make({"a": 1, "c": 3})
    with pytest.raises(ConfigurationError, match="there are no parameters"):
        make({})
    fn = compile_tags(lambda a, b="d": [a, b], None)
    assert callable(fn)
    assert fn({"a": "x", "z": 1}) == ("x", "d")
    with pytest.raises(ConfigurationError, match="takes 'a', which is not a parameter"):
        fn({"b": "y"})


def test_a_callable_receives_only_what_it_declares() -> None:
    got: list[dict[str, Any]] = []

    def tags(a: Any, *, c: Any = None) -> list[str]:
        got.append({"a": a, "c": c})
        return ["t"]

    make = compile_tags(tags, ["a", "b", "c"])
    assert callable(make) and make({"a": 1, "b": 2, "c": 3}) == ("t",)
    assert got == [{"a": 1, "c": 3}]


def test_bound_methods_and_callable_objects_declare_parameters_too() -> None:
    class Tags:
        def method(self, a: Any) -> list[str]:
            return [f"m:{a}"]

        def everything(self, request: Any, *args: Any, **kwargs: Any) -> list[str]:
            return sorted(kwargs)

        def __call__(self, b: Any) -> list[str]:
            return [f"c:{b}"]

    tags = Tags()
    cases: list[tuple[Callable[..., list[str]], tuple[str, ...]]] = [
        (tags.method, ("m:1",)),
        (tags.everything, ("a", "b")),  # request by name, the rest as **kwargs
        (tags, ("c:2",)),
    ]
    for spec, expected in cases:
        for names in (["a", "b", "request"], None):
            make = compile_tags(spec, names)
            assert callable(make) and make({"a": 1, "b": 2, "request": 3}) == expected


def test_a_callable_whose_signature_cannot_be_read_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="signature cannot be read"):
        compile_tags(max, ["a"])


def test_key_templates_share_the_rules() -> None:
    assert check_template("u:{a}:{b}:{a}", ("a", "b")) == ("a", "b", "a")
    assert check_template("u:{a.real}", ("a",)) is None  # valid, not all bare: no fast path
    assert check_template("u:{a!r}", ("a",)) is None
    assert check_template("plain", ()) == ()
    with pytest.raises(
        ConfigurationError,
        match=r"^key template 'u:\{pk\}' names 'pk', which is not a parameter \(parameters: a\)$",
    ):
        check_template("u:{pk}", ("a",))
    with pytest.raises(ConfigurationError, match=r"has the field \{0\}"):
        check_template("u:{0}", ("a",))


def test_indexed_rewrites_bare_fields_and_keeps_literal_braces() -> None:
    assert indexed("{{u}}:{a}:{b}", lambda i, name: str(i)) == "{{u}}:{0}:{1}"
    assert indexed("u:{b}-{a}", lambda i, name: f"0[{'ab'.index(name)}]") == "u:{0[1]}-{0[0]}"
    assert indexed("{{u}}:{a}", lambda i, name: str(i)).format("x") == "{u}:x"


def test_cached_keys_take_the_fast_forms_and_agree_with_the_slow_one(cache: Cache) -> None:
    calls: list[tuple[Any, ...]] = []

    @cache.cached(key="{{k}}:{b}:{a}:{b}")
    def fast(a: int, b: int = 2) -> int:
        calls.append((a, b))
        return a + b

    @cache.cached(key="k:{a.real}:{b!r}")
    def slow(a: int, b: str = "s") -> str:
        return f"{a}{b}"

    @cache.cached(key="g:{a}", tags=["t:{a}"])
    def generic(a: int, *rest: int, **extra: int) -> int:
        return a

    assert fast(1) == fast(1, 2) == fast(a=1) == fast(1, b=2) == 3
    assert calls == [(1, 2)]
    assert fast.key(1) == fast.key(a=1, b=2) == "{k}:2:1:2"
    assert slow(1) == "1s" and slow.key(1) == "k:1:'s'"
    assert generic(4, 5, x=6) == 4 and generic.key(4) == "g:4"
    cache.invalidate_tags("t:4")
    assert generic(4) == 4
