from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the pass counts of the third-party suites run inside our tests."""
    lines = [
        value
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        for name, value in getattr(report, "user_properties", [])
        if name == "starlette_suite" and getattr(report, "when", "call") == "call"
    ]
    if lines:
        terminalreporter.section("third-party suites")
        for line in lines:
            terminalreporter.write_line(line)
