"""No module reaches into another module's private names (pure AST: nothing is imported).

An underscore name is an implementation detail of the module (or class) that defines it. Code
elsewhere that reads ``cache._shared`` or imports ``_helper`` couples itself to that detail, so
every such use must go through a public API instead. Counted as a violation:

- ``X._name`` where ``X`` is not the bare name ``self`` or ``cls`` (``cache._shared``,
  ``self.cache._clock``, ``super()._x``, ``SomeClass._method(self)``), and the same access
  spelled ``getattr``/``setattr``/``hasattr``/``delattr(X, "_name")``, so that rewriting the
  attribute as a string does not hide it;
- ``from M import _name`` (with or without ``as``), unless ``_name`` is a private module of the
  importer's own top-level package;
- an import of a module of another top-level package whose dotted path has a component
  starting with ``_``: the adapters importing ``cachekit_core.layers._topology`` (or
  ``cachekit_core._core``, or one another's private modules).

Allowed: ``self._x``/``cls._x``; dunders; private modules imported inside their own top-level
package; ``other._x`` when the same file defines ``_x`` (assigns it on any object, or defines
it in a class): a use inside the module that owns the name is not a cross-module use (a class
working on another instance of itself, or a middleware's own marker on a request object); the
attribute names in ``ALLOWED_ATTRS``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cachekit_core", "cachekit_django", "cachekit_fastapi")

# Underscored names that are documented public API of a library, not private state.
ALLOWED_ATTRS: dict[str, str] = {
    "_meta": "Django's documented Model _meta API (django.db.models.options.Options)",
    "_base_manager": "Django's documented Model._base_manager (the manager for related lookups)",
    # Django internals with no public equivalent, read defensively (getattr with a default):
    "_from_testcase": "Django's TestCase marks its never-committed atomic blocks so",
    "_out": "the stream under Django's OutputWrapper, which rich needs to draw a progress bar",
}
# Builtins that reach an attribute through its name as a string.
ATTR_BUILTINS = frozenset({"getattr", "setattr", "hasattr", "delattr"})
OWN_NAMES = frozenset({"self", "cls"})


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def is_private(name: str) -> bool:
    """``_x`` and ``__x`` are private; ``__x__`` (dunder) is not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _short(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _self_assigned(tree: ast.Module) -> set[str]:
    """Private attribute names this file defines: assigned on any object (``self._x = ...``,
    ``request._x = ...``, ``setattr(obj, "_x", ...)``) or defined in a class body."""
    names: set[str] = set()

    def collect(target: ast.expr) -> None:
        if isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                collect(element)
        elif isinstance(target, ast.Starred):
            collect(target.value)
        elif isinstance(target, ast.Attribute) and is_private(target.attr):
            names.add(target.attr)

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                collect(target)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            collect(node.target)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and is_private(node.args[1].value)
        ):
            names.add(node.args[1].value)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and is_private(
                    item.name
                ):
                    names.add(item.name)
    return names


def _private_components(dotted: str) -> bool:
    return any(is_private(part) for part in dotted.split("."))


def check_source(
    source: str,
    *,
    path: str,
    module: str,
    is_package: bool,
    module_exists: Callable[[str], bool],
) -> list[Violation]:
    """Every cross-module use of a private name in ``source``, the code of ``module``."""
    tree = ast.parse(source, filename=path)
    top = module.partition(".")[0]
    own = _self_assigned(tree)
    found: list[Violation] = []

    def foreign_private_module(target: str) -> bool:
        # A package's private modules are free for its own modules (cachekit_core's engine is
        # split over several), off limits to anything else (the adapters).
        return target.partition(".")[0] != top and _private_components(target)

    def attribute(node: ast.AST, receiver: ast.expr, attr: str, how: str) -> None:
        if not is_private(attr) or attr in ALLOWED_ATTRS or attr in own:
            return
        if isinstance(receiver, ast.Name) and receiver.id in OWN_NAMES:
            return
        found.append(Violation(path, getattr(node, "lineno", 0), how))

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            attribute(node, node.value, node.attr, f"attribute {_short(node)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ATTR_BUILTINS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            how = f"{node.func.id}({_short(node.args[0])}, {node.args[1].value!r})"
            attribute(node, node.args[0], node.args[1].value, how)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if foreign_private_module(alias.name):
                    found.append(
                        Violation(path, node.lineno, f"imports private module {alias.name}")
                    )
        elif isinstance(node, ast.ImportFrom):
            source_module = _resolve(node, module, is_package)
            if source_module == "__future__":
                continue
            if foreign_private_module(source_module):
                found.append(
                    Violation(path, node.lineno, f"imports from private module {source_module}")
                )
                continue  # its names are part of the same violation
            for alias in node.names:
                if not is_private(alias.name):
                    continue
                submodule = f"{source_module}.{alias.name}"
                if module_exists(submodule):
                    if foreign_private_module(submodule):
                        what = f"imports private module {submodule}"
                        found.append(Violation(path, node.lineno, what))
                    continue  # otherwise a private module of the importer's own package
                renamed = f" as {alias.asname}" if alias.asname else ""
                what = f"imports private name {alias.name}{renamed} from {source_module}"
                found.append(Violation(path, node.lineno, what))
    return sorted(found)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    package = parts if is_package else parts[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _module_exists(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _package_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def check_tree() -> list[Violation]:
    found: list[Violation] = []
    for path in _package_files():
        rel = path.relative_to(ROOT)
        is_package = rel.name == "__init__.py"
        parts = rel.parent.parts if is_package else rel.with_suffix("").parts
        found += check_source(
            path.read_text(encoding="utf-8"),
            path=rel.as_posix(),
            module=".".join(parts),
            is_package=is_package,
            module_exists=_module_exists,
        )
    return found


def test_no_cross_module_private_names() -> None:
    # Scanning nothing would pass vacuously: the three packages hold dozens of modules.
    assert sum(1 for _ in _package_files()) > 30
    found = check_tree()
    if found:
        # pytest.fail, not assert: the list is the message, without a repr of it after.
        lines = "\n".join(map(str, found))
        pytest.fail(f"{len(found)} cross-module uses of private names:\n{lines}", pytrace=False)


_CORE_SNIPPET = """
from ._concurrency import AsyncFlights  # allowed: public name of a private core module
from . import _breaker  # allowed: a private module of the importer's own package
from .keys import _digest  # violation
from .keys import _digest as digest  # violation
from .keys import KeySpace as _KeySpace  # allowed: a public name, privately aliased


class Box:
    def __init__(self) -> None:
        self._value = 1  # allowed

    @classmethod
    def make(cls) -> int:
        return cls._count  # allowed

    def same(self, other: Box) -> bool:
        return other._value == self._value  # allowed: Box assigns self._value in this file

    def peek(self, cache: object) -> object:
        return cache._shared  # violation

    def deep(self) -> object:
        return self.cache._clock  # violation

    def parent(self) -> object:
        return super()._setup()  # violation

    def unbound(self) -> object:
        return Other._method(self)  # violation

    def by_name(self, request: object) -> object:
        return getattr(request, "_mark", None)  # violation

    def own_by_name(self) -> object:
        return getattr(self, "_value"), model._meta, self.__class__  # allowed
"""

_ADAPTER_SNIPPET = """
from cachekit_core.layers._topology import Topology  # violation
from cachekit_core import _breaker  # violation
import cachekit_core._concurrency  # violation
from cachekit_core.layers import redis  # allowed
from ._transactions import schedule  # allowed: the adapter's own private module
from .templatetags._x import y  # allowed: a private module of the same top-level package
"""

_OTHER_ADAPTER_SNIPPET = """
from cachekit_django._transactions import schedule  # violation
"""


def test_checker_reports_each_kind() -> None:
    modules = {
        "cachekit_core._breaker",
        "cachekit_core._concurrency",
        "cachekit_core.layers._topology",
        "cachekit_core.layers.redis",
        "cachekit_django._transactions",
    }

    def check(source: str, module: str) -> list[str]:
        found = check_source(
            source, path="x.py", module=module, is_package=False, module_exists=modules.__contains__
        )
        return [v.what for v in found]

    assert check(_CORE_SNIPPET, "cachekit_core.cache") == [
        "imports private name _digest from cachekit_core.keys",
        "imports private name _digest as digest from cachekit_core.keys",
        "attribute cache._shared",
        "attribute self.cache._clock",
        "attribute super()._setup",
        "attribute Other._method",
        "getattr(request, '_mark')",
    ]
    assert check(_ADAPTER_SNIPPET, "cachekit_django.middleware") == [
        "imports from private module cachekit_core.layers._topology",
        "imports private module cachekit_core._breaker",
        "imports private module cachekit_core._concurrency",
    ]
    assert check(_OTHER_ADAPTER_SNIPPET, "cachekit_fastapi.app") == [
        "imports from private module cachekit_django._transactions",
    ]
