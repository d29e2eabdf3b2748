"""The figures of the fault suite, collected by the tests and printed by ``conftest.py`` at the
end of the run (``pytest_terminal_summary``), with or without ``-s``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

SHOPS = ("django", "fastapi")


@dataclass(slots=True)
class Figure:
    scenario: str
    name: str
    values: dict[str, str]  # shop -> the figure, formatted
    limit: str = ""  # the threshold, e.g. "<= 250 ms"; "" for a figure shown for information
    failed: list[str] = field(default_factory=list)  # shops over the threshold

    @property
    def verdict(self) -> str:
        if not self.limit:
            return ""
        return "FAIL " + ",".join(self.failed) if self.failed else "ok"


FIGURES: list[Figure] = []
NOTES: list[str] = []


class Scenario:
    """Records the figures of one scenario; ``failures()`` lists those over their threshold."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.figures: list[Figure] = []

    def info(self, name: str, values: Mapping[str, object], unit: str = "") -> None:
        """A figure shown for information (no threshold)."""
        self._add(Figure(self.name, name, {k: _text(v, unit) for k, v in values.items()}))

    def check(
        self,
        name: str,
        values: Mapping[str, float | int | None],
        limit: str,
        ok: Callable[[float | int], bool],
        unit: str = "",
    ) -> None:
        """A figure with a threshold: None (never observed) fails, as does ``not ok(value)``."""
        failed = [shop for shop, value in values.items() if value is None or not ok(value)]
        shown = {shop: _text(value, unit) for shop, value in values.items()}
        self._add(Figure(self.name, name, shown, limit, failed))

    def _add(self, figure: Figure) -> None:
        self.figures.append(figure)
        FIGURES.append(figure)

    def failures(self) -> list[str]:
        return [
            f"{f.name}: {', '.join(f'{s}={f.values[s]}' for s in f.failed)} (limit {f.limit})"
            for f in self.figures
            if f.failed
        ]


def _text(value: object, unit: str = "") -> str:
    if value is None:
        return "never"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.0f}{unit}" if unit == " ms" else f"{value:.2f}{unit}"
    return f"{value}{unit}"


def table() -> list[str]:
    """The figures as a fixed-width table, one line each."""
    rows: list[tuple[str, ...]] = [("scenario", "figure", *SHOPS, "limit", "verdict")]
    rows += [
        (f.scenario, f.name, *(f.values.get(s, "-") for s in SHOPS), f.limit, f.verdict)
        for f in FIGURES
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines
