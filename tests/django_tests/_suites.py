"""Django's own cache and session test classes, pointed at cachekit_django.

Imported only by ``_suite_runner`` in a subprocess, where Django's ``tests/cache`` and
``tests/sessions_tests`` packages are importable and installed as apps. Each class subclasses
Django's and swaps the store in with ``override_settings``, as Django's own ``RedisCacheTests``
and ``LocMemCacheTests`` do for theirs.
"""

from __future__ import annotations

import os
from typing import Any

from cache import tests as cache_tests  # Django's tests/cache/tests.py
from django.test import TestCase, override_settings
from sessions_tests import tests as session_tests  # Django's tests/sessions_tests/tests.py

REDIS_URL = os.environ["CACHEKIT_SUITE_REDIS_URL"]
BACKEND = "cachekit_django.cache.CachekitCache"
ENGINE = "cachekit_django.sessions"

# Like Django's RedisCacheTests: the "cull" aliases exist to check the culling ratios of the
# LocMem, database and file backends (e.g. 29 of 49 keys left with MAX_ENTRIES=30). cachekit
# evicts LRU entries from its in-process layer and never culls Redis, so those aliases are left
# out and Django's cull tests skip themselves ("Culling isn't implemented.").
NO_CULL = {"cull", "zero_cull"}

# Tests switched off here, with the reason (reported as "excluded"). Only tests of another
# backend's internals belong here.
EXCLUDED: dict[str, str] = {
    "CachekitSessionMiddlewareTests.test_empty_session_saved": (
        "reads the session row from the django_session table (Session.objects.get), which only "
        "database-backed engines write; it runs with write-through in "
        "CachekitWriteThroughSessionMiddlewareTests"
    ),
}


def redis_caches(**aliases: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """CACHES with every alias a CachekitCache on the suite's Redis."""
    return {
        alias: {"BACKEND": BACKEND, "LOCATION": REDIS_URL, **params}
        for alias, params in aliases.items()
    }


# -- cache backend: BaseCacheTests ----------------------------------------------------------------
@override_settings(
    CACHES=cache_tests.caches_setting_for_tests(
        BACKEND=BACKEND, LOCATION=REDIS_URL, exclude=NO_CULL
    )
)
class CachekitRedisCacheTests(cache_tests.BaseCacheTests, TestCase):
    """L1 in process + Redis L2."""


@override_settings(CACHES=cache_tests.caches_setting_for_tests(BACKEND=BACKEND, exclude=NO_CULL))
class CachekitMemoryCacheTests(cache_tests.BaseCacheTests, TestCase):
    """In-process only (empty LOCATION)."""


# -- cache middleware, cache_page and django.utils.cache on CachekitCache ------------------------
@override_settings(CACHES=redis_caches(default={}))
class CachekitCacheUtils(cache_tests.CacheUtils):
    pass


@override_settings(CACHES=redis_caches(default={"KEY_PREFIX": "cacheprefix"}))
class CachekitPrefixedCacheUtils(cache_tests.PrefixedCacheUtils):
    pass


@override_settings(CACHES=redis_caches(default={}))
class CachekitCacheHEADTest(cache_tests.CacheHEADTest):
    pass


@override_settings(CACHES=redis_caches(default={}))
class CachekitCacheI18nTest(cache_tests.CacheI18nTest):
    pass


@override_settings(CACHES=redis_caches(default={"KEY_PREFIX": "cacheprefix"}))
class CachekitPrefixedCacheI18nTest(cache_tests.PrefixedCacheI18nTest):
    pass


# Django's version gives "other" its own LocMem LOCATION; here it gets its own namespace.
@override_settings(
    CACHES=redis_caches(default={}, other={"TIMEOUT": "1", "OPTIONS": {"NAMESPACE": "other"}})
)
class CachekitCacheMiddlewareTest(cache_tests.CacheMiddlewareTest):
    pass


@override_settings(CACHES=redis_caches(default={}))
class CachekitTestWithTemplateResponse(cache_tests.TestWithTemplateResponse):
    pass


# -- session engine ---------------------------------------------------------------------------
def _session_store() -> type:
    from cachekit_django.sessions import SessionStore

    return SessionStore


@override_settings(CACHES=redis_caches(default={}), SESSION_ENGINE=ENGINE)
class CachekitCacheSessionTests(session_tests.CacheSessionTests):
    """SessionTestsMixin + Django's cache-session tests, sessions in Redis."""

    backend = _session_store()


@override_settings(
    CACHES=cache_tests.caches_setting_for_tests(BACKEND=BACKEND, exclude=NO_CULL),
    SESSION_ENGINE=ENGINE,
)
class CachekitMemoryCacheSessionTests(session_tests.CacheSessionTests):
    """The same, sessions in the in-process store."""

    backend = _session_store()


@override_settings(
    CACHES=redis_caches(default={}),
    SESSION_ENGINE=ENGINE,
    CACHEKIT={"SESSIONS": {"WRITE_THROUGH": True}},
)
class CachekitCachedDBSessionTests(session_tests.CacheDBSessionTests):
    """SessionTestsMixin + Django's cached_db tests, with write-through to the database."""

    backend = _session_store()


@override_settings(USE_TZ=True)
class CachekitCachedDBSessionWithTimeZoneTests(CachekitCachedDBSessionTests):
    pass


@override_settings(CACHES=redis_caches(default={}), SESSION_ENGINE=ENGINE)
class CachekitSessionMiddlewareTests(session_tests.SessionMiddlewareTests):
    """Django's SessionMiddleware tests (written for the db engine) on cache-only sessions."""


@override_settings(
    CACHES=redis_caches(default={}),
    SESSION_ENGINE=ENGINE,
    CACHEKIT={"SESSIONS": {"WRITE_THROUGH": True}},
)
class CachekitWriteThroughSessionMiddlewareTests(session_tests.SessionMiddlewareTests):
    """The same with write-through, where the database holds the session too."""


SUITES: dict[str, list[type]] = {
    "cache": [
        CachekitRedisCacheTests,
        CachekitMemoryCacheTests,
        CachekitCacheUtils,
        CachekitPrefixedCacheUtils,
        CachekitCacheHEADTest,
        CachekitCacheI18nTest,
        CachekitPrefixedCacheI18nTest,
        CachekitCacheMiddlewareTest,
        CachekitTestWithTemplateResponse,
    ],
    "sessions": [
        CachekitCacheSessionTests,
        CachekitMemoryCacheSessionTests,
        CachekitCachedDBSessionTests,
        CachekitCachedDBSessionWithTimeZoneTests,
        CachekitSessionMiddlewareTests,
        CachekitWriteThroughSessionMiddlewareTests,
    ],
}
