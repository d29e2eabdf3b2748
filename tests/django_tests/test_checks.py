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

GOOD = {
    "LAYERS": [{"BACKEND": "memory", "MAXSIZE": 100, "TTL": 30}],
    "NAMESPACE": "shop",
    "DEFAULT_TTL": 300,
    "JITTER": 0.1,
    "SERIALIZER": "json",
    "HTTP": {"SHARED_CACHE": True, "HEADER_NAME": None, "CACHEABLE_STATUSES": [200, 203]},
    "SESSIONS": {"WRITE_THROUGH": True},
}


def ids(settings: Any, config: Any) -> list[str]:
    settings.CACHEKIT = config
    return [m.id for m in checks.check_settings()]


def test_a_good_configuration_passes(settings: Any) -> None:
    assert ids(settings, GOOD) == []
    assert ids(settings, None) == []  # CACHEKIT is optional
    assert ids(settings, {}) == []


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
        ({"LAYERS": [{"BACKEND": "redis", "URL": "http://127.0.0.1:1/"}]}, "cachekit.E007"),
    ],
)
def test_misconfigurations_are_reported(settings: Any, config: Any, expected: str) -> None:
    assert expected in ids(settings, config)


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
