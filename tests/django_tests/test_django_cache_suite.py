"""Django's own cache tests (``tests/cache/tests.py`` of the installed Django) on CachekitCache:
``BaseCacheTests`` on Redis and in process, and the cache middleware / ``cache_page`` /
``django.utils.cache`` classes with CachekitCache as their store. See ``_suites`` for the classes
and any exclusion (with its reason), ``_django_src`` for how the sources are fetched."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer

from ._django_src import SuiteResult, run_suite

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

CLASSES = [
    "CachekitRedisCacheTests",
    "CachekitMemoryCacheTests",
    "CachekitCacheUtils",
    "CachekitPrefixedCacheUtils",
    "CachekitCacheHEADTest",
    "CachekitCacheI18nTest",
    "CachekitPrefixedCacheI18nTest",
    "CachekitCacheMiddlewareTest",
    "CachekitTestWithTemplateResponse",
]


@pytest.fixture(scope="module")
def suite(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> SuiteResult:
    redis_server.cli("FLUSHALL")
    workdir: Path = tmp_path_factory.mktemp("django-cache-suite")
    return run_suite("cache", redis_server.url, workdir)


@pytest.mark.parametrize("name", CLASSES)
def test_django_cache_suite(suite: SuiteResult, name: str) -> None:
    suite.check(name)


def test_every_class_is_checked(suite: SuiteResult) -> None:
    assert sorted(suite.classes) == sorted(CLASSES)
