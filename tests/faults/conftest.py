"""Prints the fault suite's figures at the end of the run (also without ``-s``)."""

from __future__ import annotations

from typing import Any

from ._report import FIGURES, NOTES, table


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("fault suite: the example shops under a bounded load")
        for line in table():
            terminalreporter.write_line(line)
        for note in NOTES:
            terminalreporter.write_line(note)
