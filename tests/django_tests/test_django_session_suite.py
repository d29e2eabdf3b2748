"""Django's own session tests (``tests/sessions_tests/tests.py`` of the installed Django) on
``cachekit_django.sessions``: ``SessionTestsMixin`` through Django's ``CacheSessionTests`` (Redis
and in-process stores) and ``CacheDBSessionTests`` (with write-through), and Django's
``SessionMiddlewareTests`` with this engine. See ``_suites`` for the classes and exclusions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer

from ._django_src import SuiteResult, run_suite

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CLASSES = [
    "CachekitCacheSessionTests",
    "CachekitMemoryCacheSessionTests",
    "CachekitCachedDBSessionTests",
    "CachekitCachedDBSessionWithTimeZoneTests",
    "CachekitSessionMiddlewareTests",
    "CachekitWriteThroughSessionMiddlewareTests",
]


@pytest.fixture(scope="module")
def suite(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> SuiteResult:
    redis_server.cli("FLUSHALL")
    workdir: Path = tmp_path_factory.mktemp("django-session-suite")
    return run_suite("sessions", redis_server.url, workdir)


@pytest.mark.parametrize("name", CLASSES)
def test_django_session_suite(suite: SuiteResult, name: str) -> None:
    suite.check(name)


def test_every_class_is_checked(suite: SuiteResult) -> None:
    assert sorted(suite.classes) == sorted(CLASSES)
