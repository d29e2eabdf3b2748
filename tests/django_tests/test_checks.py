"""System checks: a misconfigured CACHEKIT, an unreachable Redis, a misplaced middleware."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks as django_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from cachekit_django import checks
from tests.support.redis_server import free_port

from .shopapp.testing import CACHE_MIDDLEWARE

BACKEND = "cachekit_django.cache.CachekitCache"
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
GOOD = {
    "CACHE": "default",
    "HTTP": {"SHARED_CACHE": True, "HEADER_NAME": None, "CACHEABLE_STATUSES": [200, 203]},
    "SESSIONS": {"WRITE_THROUGH": True},
}
# Deprecated, still checked (and working) for one release.
GOOD_DEPRECATED = {
    "LAYERS": [{"BACKEND": "memory", "MAXSIZE": 100, "TTL": 30}],
    "NAMESPACE": "shop",
    "DEFAULT_TTL": 300,
    "JITTER": 0.1,
    "SERIALIZER": "json",
    "HTTP": {"SHARED_CACHE": True},
}


def entry(location: str = "", **options: Any) -> dict[str, Any]:
    return {"BACKEND": BACKEND, "LOCATION": location, "OPTIONS": options}


def ids(settings: Any, config: Any) -> list[str]:
    settings.CACHEKIT = config
    return [m.id for m in checks.check_settings()]


def test_a_good_configuration_passes(settings: Any) -> None:
    assert ids(settings, GOOD) == []
    assert ids(settings, None) == []  # CACHEKIT is optional
    assert ids(settings, {}) == []
    assert ids(settings, GOOD_DEPRECATED) == []  # warned about at run time, not an error


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (["not", "a", "dict"], "cachekit.E001"),
        ({"LAYER": []}, "cachekit.E002"),  # a typo of LAYERS
        ({"DEFAULT_TTL": "300"}, "cachekit.E003"),
        ({"JITTER": True}, "cachekit.E003"),
        ({"JITTER": 1.5}, "cachekit.E003"),
        ({"DEFAULT_TTL": -1}, "cachekit.E003"),
        ({"SERIALIZER": "yaml"}, "cachekit.E003"),
        ({"LAYERS": {"BACKEND": "memory"}}, "cachekit.E003"),
        ({"NAMESPACE": "has space"}, "cachekit.E004"),
        ({"NAMESPACE": "x" * 65}, "cachekit.E004"),
        ({"LAYERS": [{"BACKEND": "memcached"}]}, "cachekit.E005"),
        ({"LAYERS": ["memory"]}, "cachekit.E005"),
        ({"LAYERS": [{"BACKEND": "memory", "SIZE": 1}]}, "cachekit.E005"),
        ({"LAYERS": [{"BACKEND": "redis"}]}, "cachekit.E005"),
        ({"HTTP": {"SHARED": True}}, "cachekit.E006"),
        ({"HTTP": {"MAX_BODY_SIZE": "1MB"}}, "cachekit.E006"),
        ({"HTTP": {"CACHEABLE_STATUSES": [200, 404]}}, "cachekit.E006"),
        ({"HTTP": {"CACHEABLE_STATUSES": [200, 304]}}, "cachekit.E006"),
        ({"HTTP": {"CACHEABLE_STATUSES": [206]}}, "cachekit.E006"),
        ({"HTTP": {"CACHEABLE_STATUSES": 200}}, "cachekit.E006"),
        ({"HTTP": {"HEADER_NAME": "X Cache"}}, "cachekit.E006"),
        ({"HTTP": {"SESSION_COOKIE": "sid"}}, "cachekit.E006"),  # SESSION_COOKIE_NAME's job
        ({"HTTP": ["SHARED_CACHE"]}, "cachekit.E003"),
        ({"LAYERS": [{"BACKEND": "redis", "URL": "redis://h:1/0"}] * 2}, "cachekit.E005"),
        ({"LAYERS": [{"BACKEND": "redis", "URL": "http://127.0.0.1:1/"}]}, "cachekit.E007"),
        ({"CACHE": 1}, "cachekit.E003"),
        ({"CACHE": "missing"}, "cachekit.E008"),
        ({"CACHE": "default", "LAYERS": [{"BACKEND": "memory"}]}, "cachekit.E009"),
        ({"CACHE": "default", "NAMESPACE": "shop"}, "cachekit.E009"),
    ],
)
def test_misconfigurations_are_reported(settings: Any, config: Any, expected: str) -> None:
    assert expected in ids(settings, config)


def test_http_settings_are_the_cores(settings: Any) -> None:
    # One definition: the core validates, the check reports what it says, naming the key.
    settings.CACHEKIT = {"HTTP": {"MAX_BODY_SIZE": -1}}
    (message,) = checks.check_settings()
    assert message.id == "cachekit.E006"
    assert 'CACHEKIT["HTTP"]' in message.msg and "MAX_BODY_SIZE" in message.msg
    # The core stores redirects (S2 refuses only 206, 304, 4xx and 5xx).
    assert ids(settings, {"HTTP": {"CACHEABLE_STATUSES": [200, 301, 308]}}) == []


def test_messages_name_the_setting_and_the_fix(settings: Any) -> None:
    settings.CACHEKIT = {"LAYERS": [{"BACKEND": "memcached"}]}
    (message,) = checks.check_settings()
    assert message.is_serious() and 'CACHEKIT["LAYERS"][0]' in message.msg
    assert message.hint and "redis" in message.hint


def test_an_unreachable_redis_is_reported_without_its_password(settings: Any) -> None:
    url = f"redis://user:hunter2@127.0.0.1:{free_port()}/0"
    settings.CACHEKIT = {"LAYERS": [{"BACKEND": "redis", "URL": url}]}
    settings.CACHES = {
        "default": {"BACKEND": "cachekit_django.cache.CachekitCache", "LOCATION": url}
    }
    warnings = checks.check_redis()
    assert [w.id for w in warnings] == ["cachekit.W001"]  # one URL, reported once
    assert "hunter2" not in warnings[0].msg and "unreachable" in warnings[0].msg


def test_a_reachable_redis_passes(settings: Any, redis_url: str) -> None:
    settings.CACHEKIT = {"LAYERS": [{"BACKEND": "redis", "URL": redis_url}]}
    assert checks.check_redis() == []


def test_the_middleware_must_sit_above_sessions_and_csrf(settings: Any) -> None:
    settings.MIDDLEWARE = [CACHE_MIDDLEWARE, "django.contrib.sessions.middleware.SessionMiddleware"]
    assert checks.check_middleware() == []
    settings.MIDDLEWARE = list(reversed(settings.MIDDLEWARE))
    assert [m.id for m in checks.check_middleware()] == ["cachekit.W002"]


def test_the_checks_are_registered_and_run_by_manage_py_check(settings: Any) -> None:
    settings.CACHEKIT = {"NAMESPACE": "bad namespace"}
    found = django_checks.run_checks(tags=["cachekit"])
    assert "cachekit.E004" in [m.id for m in found]
    with pytest.raises(SystemCheckError, match=r"cachekit\.E004"):
        call_command("check")


# --------------------------------------------------------------------------- one engine


def test_the_alias_must_be_a_cachekit_cache(settings: Any) -> None:
    settings.CACHES = {"default": entry(), "locmem": {"BACKEND": LOCMEM}}
    settings.CACHEKIT = {"CACHE": "locmem"}
    (message,) = checks.check_settings()
    assert message.id == "cachekit.E008" and "does not use CachekitCache" in message.msg


def test_bad_options_of_a_cachekit_alias_are_reported(settings: Any) -> None:
    settings.CACHES = {"default": entry(SOKET_TIMEOUT=1), "sessions": entry(SERIALIZER="json")}
    found = checks.check_settings()
    assert [m.id for m in found] == ["cachekit.E007", "cachekit.E007"]
    assert "SOKET_TIMEOUT" in found[0].msg and "JSON" in found[1].msg
    assert {m.obj for m in found} == {"settings.CACHES"}


def w003(settings: Any, **overrides: Any) -> list[Any]:
    for name, value in overrides.items():
        setattr(settings, name, value)
    return [m for m in checks.check_engines() if m.id == "cachekit.W003"]


def test_w003_pages_on_deprecated_memory_layers_while_caches_is_on_redis(settings: Any) -> None:
    """The reported case: CACHES["default"] moved to Redis, pages left in process memory."""
    (message,) = w003(
        settings,
        CACHES={"default": entry("redis://127.0.0.1:1/0")},
        CACHEKIT={"LAYERS": [{"BACKEND": "memory", "TTL": 30}]},
    )
    assert "in-process memory only" in message.msg and "Redis at" in message.msg
    assert message.hint and "CACHES['cachekit']" in message.hint  # the settings to write


def test_w003_pages_fall_back_when_the_default_alias_is_not_cachekit(settings: Any) -> None:
    (message,) = w003(settings, CACHES={"default": {"BACKEND": LOCMEM}}, CACHEKIT=None)
    assert LOCMEM in message.msg


def test_w003_sessions_in_process_memory_while_pages_are_in_redis(settings: Any) -> None:
    caches_setting = {"default": entry(), "pages": entry("redis://127.0.0.1:1/0")}
    assert w003(settings, CACHES=caches_setting, CACHEKIT={"CACHE": "pages"}) == []
    (message,) = w003(settings, SESSION_CACHE_ALIAS="default")
    assert "Sessions are kept in each process's memory" in message.msg
    # A session alias of its own on Redis is a choice, not a split.
    caches_setting["default"] = entry("redis://127.0.0.1:2/0")
    assert w003(settings, CACHES=caches_setting) == []
    # So is a session engine other than cachekit's.
    caches_setting["default"] = entry()
    assert (
        w003(settings, CACHES=caches_setting, SESSION_ENGINE="django.contrib.sessions.backends.db")
        == []
    )


def test_w003_one_in_process_location_split_in_two_stores(settings: Any) -> None:
    split = {"default": entry(), "long": {**entry(), "TIMEOUT": 3600}}
    (message,) = w003(settings, CACHES=split)
    assert "'default', 'long'" in message.msg
    versions = {"default": entry(), "v2": {**entry(), "VERSION": 2}}  # one store, as in LocMem
    assert w003(settings, CACHES=versions) == []


def test_no_w003_for_one_configuration(settings: Any) -> None:
    assert w003(settings, CACHES={"default": entry("redis://127.0.0.1:1/0")}, CACHEKIT=None) == []
    # Deprecated keys that describe CACHES["default"] exactly: one engine, no split.
    assert (
        w003(settings, CACHES={"default": entry(NAMESPACE="shop")}, CACHEKIT={"NAMESPACE": "shop"})
        == []
    )


def test_w001_pings_the_redis_the_pages_use(settings: Any) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = {"default": entry(), "pages": entry(url)}
    settings.CACHEKIT = {"CACHE": "pages"}
    (warning,) = checks.check_redis()
    assert warning.id == "cachekit.W001"
    assert "pages, fragments and invalidation (CACHES['pages'])" in warning.msg
    assert "sessions" in warning.msg  # they follow CACHEKIT["CACHE"]
    # Deprecated: the Redis of CACHEKIT["LAYERS"], which the pages use, not CACHES'.
    settings.CACHES = {"default": entry()}
    settings.CACHEKIT = {"LAYERS": [{"BACKEND": "redis", "URL": url}]}
    (warning,) = checks.check_redis()
    assert "pages, fragments and invalidation (CACHEKIT)" in warning.msg
