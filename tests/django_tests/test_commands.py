"""``manage.py cachekit stats | clear | warm URL... | check``."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from cachekit_django import conf
from tests.support.redis_server import free_port

from .shopapp.testing import use_cachekit, x_cache

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("cachekit", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _cachekit(settings: Any) -> None:
    use_cachekit(settings)


def test_stats(settings: Any) -> None:
    conf.get_cache().get("missing")
    out, _ = run("stats")
    assert "shoptest" in out and "memory.misses: 1" in out
    data = json.loads(run("stats", "--json")[0])
    assert data["namespace"] == "shoptest" and data["layers"]["memory"]["misses"] == 1


def test_stats_reports_the_redis_server(settings: Any, redis_url: str) -> None:
    use_cachekit(settings, redis_url=redis_url)
    data = json.loads(run("stats", "--json")[0])
    (server,) = data["redis_servers"].values()
    assert server["redis_version"]


def test_clear(settings: Any, redis_url: str) -> None:
    use_cachekit(settings, redis_url=redis_url)
    conf.get_cache().set("k", 1)
    out, _ = run("clear")
    assert "Cleared namespace 'shoptest'" in out
    conf.close_all()  # another process: nothing left in Redis either
    assert conf.get_cache().get("k") is None


def test_clear_fails_loudly_when_redis_is_down(settings: Any) -> None:
    use_cachekit(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(CommandError, match="unreachable"):
        run("clear")


def test_clear_fails_when_redis_stopped_after_use(settings: Any, private_redis: Any) -> None:
    use_cachekit(settings, redis_url=private_redis.url)
    conf.get_cache().set("k", 1)  # connected, and the engine's counters are all zero
    private_redis.stop()
    with pytest.raises(CommandError, match="namespace 'shoptest' not cleared"):
        run("clear")


def test_warm_fetches_urls_in_process_with_a_progress_bar(settings: Any, redis_url: str) -> None:
    use_cachekit(settings, redis_url=redis_url)
    out, err = run("warm", "/echo/?k=warm", "http://testserver/products/")
    assert "Warmed 2 URL(s)" in out
    assert "200 MISS /echo/?k=warm" in err and "warming" in err  # the rich progress bar
    conf.close_all()  # the pages are in Redis, for every process
    assert x_cache(Client().get("/echo/?k=warm")) == "HIT"
    assert x_cache(Client().get("/products/")) == "HIT"


def test_warm_uses_the_url_host_and_reports_failures(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["shop.test"]
    with pytest.raises(CommandError, match=r"1 URL\(s\) failed: /nope/: 404"):
        run("warm", "/echo/", "/nope/")
    _, err = run("warm", "https://shop.test/echo/?k=host")
    assert "in-process only" in err  # warming a memory-only cache helps nobody: say so
    page = Client().get("/echo/?k=host", HTTP_HOST="shop.test", secure=True)
    assert x_cache(page) == "HIT"


def test_check(settings: Any, redis_url: str) -> None:
    use_cachekit(settings, redis_url=redis_url)
    out, _ = run("check")
    assert ": OK" in out and "configuration OK" in out
    settings.CACHEKIT = {"NAMESPACE": "bad namespace", "LAYERS": []}
    with pytest.raises(CommandError):
        run("check")


def test_check_reports_an_unreachable_redis(settings: Any) -> None:
    use_cachekit(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    out = StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("cachekit", "check", stdout=out)
    assert "cachekit.W001" in out.getvalue()


def test_check_fails_when_pages_and_caches_use_different_stores(
    settings: Any, redis_url: str
) -> None:
    """The reported case: CACHES["default"] moved to Redis while the deprecated CACHEKIT kept
    the pages in each process's memory. The command used to call that configuration OK."""
    use_cachekit(settings, redis_url=redis_url)
    settings.CACHEKIT = {"LAYERS": [{"BACKEND": "memory", "TTL": 30}]}
    out = StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("cachekit", "check", stdout=out)
    text = out.getvalue()
    assert "Pages, fragments and invalidation: deprecated CACHEKIT settings" in text
    assert "in-process only" in text and "cachekit.W003" in text
    settings.CACHEKIT = {}  # one configuration: everything on CACHES["default"], in Redis
    out = StringIO()
    call_command("cachekit", "check", stdout=out)
    assert "Pages, fragments and invalidation: CACHES['default'], Redis at" in out.getvalue()
    assert "configuration OK" in out.getvalue()
