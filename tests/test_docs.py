"""Documentation the code relies on: cited HTTP rule ids exist, the README starts usefully.

Code cites rows of docs/HTTP-RULES.md by id (``S3``, ``K7``, ``C10``, ranges like ``S1-S8``)
in comments and docstrings; an id without a row is a dangling reference a reader cannot follow.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cachekit_core", "cachekit_django", "cachekit_fastapi")
RULES = ROOT / "docs" / "HTTP-RULES.md"

# A rule id is one of the table letters (Storing, Keying, Conditional, seRving) and a number,
# standing alone: not inside a word or identifier (``S3Bucket``, ``x.R1``) and not a longer
# code such as a Django check id (``E001``) or the L1/L2 layer names. ``S1-S8`` cites a range.
CITATION = re.compile(
    r"(?<![\w.])(?P<letter>[SKCR])(?P<first>\d{1,2})"
    r"(?:\s?[-\u2013]\s?(?P=letter)?(?P<last>\d{1,2}))?(?!\w)"
)
# A table row of the rules file: ``| S3 | rule | source |``.
ROW = re.compile(r"^\|\s*(?P<id>[A-Z]\d+)\s*\|", re.MULTILINE)


def _prose(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every comment and every bare string statement (docstrings): only
    prose cites rules, so identifiers and data strings can never be mistaken for citations."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            # Report each line of a docstring on its own line number.
            for offset, line in enumerate(node.value.value.splitlines()):
                yield node.lineno + offset, line


def cited_ids(source: str) -> Iterator[tuple[int, str]]:
    """(line, id) for every rule id cited in ``source``'s prose, ranges expanded."""
    for lineno, text in _prose(source):
        for match in CITATION.finditer(text):
            first = int(match["first"])
            last = int(match["last"]) if match["last"] else first
            for number in range(first, max(first, last) + 1):
                yield lineno, f"{match['letter']}{number}"


def rule_rows() -> set[str]:
    return set(ROW.findall(RULES.read_text(encoding="utf-8")))


def test_citation_pattern() -> None:
    source = (
        '"""Stored only if allowed (S1-S8, C9); HEAD (K7). Not rules: S3Bucket, E001, L1."""\n'
        "x = 1  # R4: after an unsafe method; C10, C11, as K123 and x.R2 are not. See S17.\n"
        "S2 = 'S5'  # an identifier and a data string are not citations\n"
    )
    ids = [rule for _, rule in cited_ids(source)]
    assert ids == ["R4", "C10", "C11", "S17", *(f"S{n}" for n in range(1, 9)), "C9", "K7"]


def test_every_cited_rule_id_has_a_row() -> None:
    rows = rule_rows()
    cited: list[tuple[str, int, str]] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            rel = path.relative_to(ROOT).as_posix()
            cited += [(rel, line, rule) for line, rule in cited_ids(source)]
    # The packages cite dozens of rules: finding none means the pattern broke, not success.
    assert len(cited) > 20, cited
    missing = [f"{rel}:{line}: {rule}" for rel, line, rule in cited if rule not in rows]
    assert not missing, "rule ids with no row in docs/HTTP-RULES.md:\n" + "\n".join(missing)


def test_readme_first_screen_says_how_to_run() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:40])
    for command in ("make demo", "make test"):
        assert command in first_screen, f"{command!r} is not in README.md's first 40 lines"
