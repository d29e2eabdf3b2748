"""Fixtures for the Django adapter's tests (settings: ``tests.django_tests.settings``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.test import override_settings

from cachekit_django import conf

from ._django_src import SUMMARIES

BACKEND = "cachekit_django.cache.CachekitCache"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUMMARIES:
        terminalreporter.section("Django's own test suites against cachekit_django")
        for line in SUMMARIES:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    """Engines are process-wide; close them after each test so no L1 survives into the next
    (the ``redis_url`` fixture flushes Redis, which an L1 copy would not notice)."""
    yield
    conf.close_all()


@pytest.fixture
def redis_caches(redis_url: str) -> Iterator[str]:
    """``CACHES["default"]``: a CachekitCache with L1 in front of the test Redis."""
    caches = {"default": {"BACKEND": BACKEND, "LOCATION": redis_url}}
    with override_settings(CACHES=caches):
        yield redis_url


@pytest.fixture
async def aclose_engines() -> AsyncIterator[None]:
    """For async tests: close the engines' asyncio clients on the test's own loop."""
    yield
    await conf.aclose_all()
