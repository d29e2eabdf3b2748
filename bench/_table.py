"""Plain-text result tables shared by the core and HTTP suites."""

from __future__ import annotations

from collections.abc import Sequence

# Columns 2, 4 and 5 (the two figures and the ratio) are right-aligned in both suites' tables.
RIGHT = frozenset({2, 4, 5})


def aligned(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``headers`` and ``rows`` as space-aligned columns under a dashed rule."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in RIGHT else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])
