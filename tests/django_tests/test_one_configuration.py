"""One Django configuration: pages, fragments, model invalidation, the metrics view, the
management command and sessions all run on the engine of one ``CACHES`` alias
(``CACHEKIT["CACHE"]``, default ``"default"``); the deprecated ``CACHEKIT`` engine keys still
work for one release, with a warning that quotes their exact ``CACHES`` equivalent; and the
TTL a page or fragment asks for is the TTL it gets, whatever the settings."""

from __future__ import annotations

import ast
import json
import math
import re
import time
from io import StringIO
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.template import Context, Template
from django.test import Client, override_settings

from cachekit_core import Cache
from cachekit_django import conf
from cachekit_django.cache import CachekitCache
from cachekit_django.conf import EngineSpec
from cachekit_django.middleware import get_http_cache
from cachekit_django.sessions import KEY_PREFIX, SessionStore
from cachekit_django.templatetags.cachekit import fragment_key
from cachekit_django.views import metrics_registry

from .shopapp.models import Product
from .shopapp.testing import BACKEND, renders, use_cachekit, x_cache

pytestmark = pytest.mark.django_db

FRAGMENT = '{% load cachekit %}{% cachefragment 300 "side" %}{{ body }}{% endcachefragment %}'


def entry(location: str = "", **options: Any) -> dict[str, Any]:
    """A CACHES entry for CachekitCache."""
    found: dict[str, Any] = {"BACKEND": BACKEND, "OPTIONS": options}
    if location:
        found["LOCATION"] = location
    return found


def backend(alias: str) -> CachekitCache:
    cache = caches[alias]
    assert isinstance(cache, CachekitCache)
    return cache


def render(source: str, **context: Any) -> str:
    return Template(source).render(Context(context))


class Clock:
    """Moves an engine's clock (freshness, and the HTTP layer's Age) forward."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, engine: Cache) -> None:
        self.offset = 0.0
        monkeypatch.setattr(engine, "clock", lambda: time.time() + self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def namespaces_in(registry: Any) -> set[str]:
    return {s.labels["namespace"] for m in registry.collect() for s in m.samples}


# =========================================================================== one alias


def test_every_part_runs_on_the_default_alias_and_follows_it_to_redis(
    settings: Any, redis_url: str
) -> None:
    use_cachekit(settings, redis_url=redis_url)  # CACHES["default"] on Redis, no CACHEKIT keys
    engine = backend("default").engine
    assert conf.engine() is engine and get_http_cache().cache is engine
    client = Client()
    first = client.get("/echo/?k=one")
    html = render(FRAGMENT, body="cached")
    Product.objects.create(name="a")  # invalidation: a tag bump, in the same Redis
    session = SessionStore()
    session["cart"] = [1]
    session.save()

    # Everything is in Redis, under the alias's namespace (pages, fragments, tags, sessions).
    stored = [key.decode() for key in redis.Redis.from_url(redis_url).scan_iter("shoptest:*")]
    assert any("http:" in key for key in stored), stored
    assert any("fragment:" in key for key in stored), stored
    assert any("shopapp.product" in key for key in stored), stored
    assert backend("default").get(KEY_PREFIX + str(session.session_key)) == {"cart": [1]}
    assert engine.get(fragment_key("side", [])) == html == "cached"
    conf.close_all()  # another process: an empty L1, the same Redis
    assert conf.engine() is backend("default").engine is not engine
    hit = client.get("/echo/?k=one")
    assert x_cache(hit) == "HIT" and renders(hit) == renders(first)
    assert namespaces_in(metrics_registry()) == {"shoptest"}
    out = StringIO()
    call_command("cachekit", "stats", "--json", stdout=out)
    assert json.loads(out.getvalue())["namespace"] == "shoptest"


def test_cachekit_cache_names_the_alias(settings: Any) -> None:
    settings.CACHES = {"default": entry(NAMESPACE="django"), "other": entry(NAMESPACE="other")}
    settings.CACHEKIT = {"CACHE": "other"}
    use_cachekit_middleware(settings)
    engine = backend("other").engine
    assert conf.engine() is engine and engine is not backend("default").engine
    client = Client()
    client.get("/echo/?k=other")
    assert x_cache(client.get("/echo/?k=other")) == "HIT"
    render(FRAGMENT, body="x")
    assert engine.get(fragment_key("side", [])) == "x"
    assert backend("default").engine.get(fragment_key("side", [])) is None
    assert namespaces_in(metrics_registry()) == {"other"}
    # Sessions follow the engine's alias unless SESSION_CACHE_ALIAS says otherwise.
    assert conf.session_alias() == "other"
    session = SessionStore()
    session.save()
    assert backend("other").has_key(KEY_PREFIX + str(session.session_key))
    settings.SESSION_CACHE_ALIAS = "default"
    assert conf.session_alias() == "default"


def use_cachekit_middleware(settings: Any) -> None:
    settings.MIDDLEWARE = ["cachekit_django.middleware.CacheMiddleware", *settings.MIDDLEWARE]


@pytest.mark.parametrize(
    ("caches_setting", "message"),
    [
        ({"default": entry()}, r"CACHES\['nope'\] is not defined"),
        (
            {
                "default": entry(),
                "nope": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            },
            r"CACHES\['nope'\] does not use CachekitCache",
        ),
    ],
)
def test_cachekit_cache_must_name_a_cachekit_alias(
    settings: Any, caches_setting: dict[str, Any], message: str
) -> None:
    settings.CACHES = caches_setting
    settings.CACHEKIT = {"CACHE": "nope"}
    with pytest.raises(ImproperlyConfigured, match=message):
        conf.engine()


def test_cachekit_cache_and_deprecated_keys_cannot_be_combined(settings: Any) -> None:
    settings.CACHEKIT = {"CACHE": "default", "NAMESPACE": "old"}
    with pytest.raises(ImproperlyConfigured, match=r'CACHEKIT\["NAMESPACE"\]'):
        conf.engine()


def test_timeout_is_the_default_ttl_of_pages_and_fragments(settings: Any) -> None:
    settings.CACHES = {"default": {**entry(), "TIMEOUT": 1000}}
    assert conf.engine().default_ttl == 1000
    settings.CACHES = {"default": {**entry(), "TIMEOUT": None}}  # Django's "forever"
    assert conf.engine().default_ttl == math.inf


def test_json_cannot_store_django_values(settings: Any) -> None:
    settings.CACHES = {"default": entry(SERIALIZER="json")}
    with pytest.raises(ImproperlyConfigured, match="JSON cannot hold"):
        caches["default"]


# =========================================================================== TTLs


def test_a_page_gets_the_ttl_it_asks_for(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No CACHEKIT and an in-process CACHES["default"] (the test settings): a
    ``cache_view(ttl=600)`` page outlives an L1's 30 s."""
    use_cachekit_middleware(settings)
    clock = Clock(monkeypatch, conf.engine())
    client = Client()
    first = client.get("/long/")
    clock.advance(31)
    hit = client.get("/long/")
    assert x_cache(hit) == "HIT" and renders(hit) == renders(first)
    assert hit.headers["Age"] == "31"
    clock.advance(570)  # 601 s
    assert x_cache(client.get("/long/")) == "MISS"


def test_a_fragment_gets_the_ttl_it_asks_for(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch, conf.engine())
    assert render(FRAGMENT, body="first") == "first"
    clock.advance(31)
    assert render(FRAGMENT, body="second") == "first"
    clock.advance(270)  # 301 s
    assert render(FRAGMENT, body="third") == "third"


def test_a_fragment_without_ttl_gets_the_alias_timeout(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CACHES = {"default": {**entry(), "TIMEOUT": 1000}}
    clock = Clock(monkeypatch, conf.engine())
    source = "{% load cachekit %}{% cachefragment None n %}{{ body }}{% endcachefragment %}"
    render(source, body="first")
    clock.advance(999)
    assert render(source, body="second") == "first"
    clock.advance(2)
    assert render(source, body="third") == "third"


def test_deprecated_memory_layer_ttl_no_longer_caps_pages(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CACHEKIT = {"LAYERS": [{"BACKEND": "memory", "MAXSIZE": 100, "TTL": 30}]}
    use_cachekit_middleware(settings)
    with pytest.warns(DeprecationWarning, match=r'CACHEKIT\["LAYERS"\] is deprecated'):
        engine = conf.engine()
    assert engine.local is not None and engine.local.ttl is None
    clock = Clock(monkeypatch, engine)
    client = Client()
    client.get("/long/")
    clock.advance(31)
    assert x_cache(client.get("/long/")) == "HIT"


# =========================================================================== deprecated


def equivalent(message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CACHES entry and CACHEKIT setting a deprecation message tells one to write."""
    match = re.search(r"CACHES\['\w+'\] = (\{.*?\}\}) and CACHEKIT = (\{.*?\})\.", message)
    assert match, message
    return ast.literal_eval(match.group(1)), ast.literal_eval(match.group(2))


def test_deprecated_engine_keys_warn_once_and_still_work(settings: Any, redis_url: str) -> None:
    config = {
        "LAYERS": [
            {"BACKEND": "memory", "MAXSIZE": 500, "TTL": 5},
            {"BACKEND": "redis", "URL": redis_url, "SOCKET_TIMEOUT": 0.5},
        ],
        "NAMESPACE": "old",
        "DEFAULT_TTL": 60,
        "JITTER": 0.1,
        "HTTP": {"HEADER_NAME": "X-Cache"},
    }
    settings.CACHEKIT = config
    use_cachekit_middleware(settings)
    with pytest.warns(DeprecationWarning, match=r'CACHEKIT\["LAYERS"\]') as record:
        engine = conf.engine()
    assert conf.engine() is engine  # no second warning (the suite turns warnings into errors)
    assert (engine.namespace, engine.default_ttl, engine.jitter) == ("old", 60, 0.1)
    assert [layer.name for layer in engine.layers] == ["memory", "redis"]
    assert engine.local is not None and (engine.local.maxsize, engine.local.ttl) == (500, 5)
    client = Client()
    client.get("/echo/?k=old")
    assert x_cache(client.get("/echo/?k=old")) == "HIT"
    assert get_http_cache().cache is engine

    # The message quotes the exact equivalent: written into the settings, the same engine.
    caches_entry, cachekit = equivalent(str(record[0].message))
    assert cachekit == {"HTTP": {"HEADER_NAME": "X-Cache"}, "CACHE": "cachekit"}
    location = caches_entry.pop("LOCATION")
    assert EngineSpec.from_cache_params(location, caches_entry) == conf.source().spec
    settings.CACHES = {**settings.CACHES, "cachekit": {**caches_entry, "LOCATION": location}}
    settings.CACHEKIT = cachekit
    assert conf.engine() is backend("cachekit").engine  # no warning now
    assert x_cache(client.get("/echo/?k=old")) == "HIT"  # the same store


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"LAYERS": [{"BACKEND": "memory", "MAXSIZE": 5, "MAX_BYTES": 10_000, "POLICY": "lfu"}]},
        {"LAYERS": [{"BACKEND": "redis", "URL": "redis://h:1/2", "TAG_TTL": 60}]},
        {
            "LAYERS": [
                {"BACKEND": "memory", "TTL": 5},
                {"BACKEND": "redis", "URL": "redis+cluster://h:1", "BREAKER_THRESHOLD": 1},
            ],
            "DEFAULT_TTL": None,
            "SERIALIZER": "pickle",
            "SECRET_KEY": "s3cret",
        },
    ],
)
def test_each_deprecated_setting_has_an_exact_caches_equivalent(config: dict[str, Any]) -> None:
    spec = conf.spec_from_cachekit(config)
    written = spec.caches_entry()
    assert EngineSpec.from_cache_params(written.pop("LOCATION", ""), written) == spec


def test_the_warning_never_quotes_a_password_or_secret(settings: Any) -> None:
    url = "redis://user:hunter2@127.0.0.1:1/0"
    settings.CACHEKIT = {
        "LAYERS": [{"BACKEND": "redis", "URL": url}],
        "SECRET_KEY": "do-not-log-me",
    }
    with pytest.warns(DeprecationWarning, match="are deprecated") as record:
        conf.engine()
    message = str(record[0].message)
    assert "hunter2" not in message and "do-not-log-me" not in message
    assert 'CACHEKIT["SECRET_KEY"]' in message


def test_deprecated_keys_describing_the_default_alias_share_its_engine(settings: Any) -> None:
    settings.CACHES = {"default": entry(NAMESPACE="shop")}
    settings.CACHEKIT = {"NAMESPACE": "shop"}  # in-process, like CACHES["default"]
    with pytest.warns(DeprecationWarning, match="already describes the same engine"):
        assert conf.engine() is backend("default").engine


def test_a_default_alias_of_another_backend_falls_back_with_a_warning(settings: Any) -> None:
    locmem = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    settings.CACHES = {"default": locmem}
    with pytest.warns(DeprecationWarning, match="is not a CachekitCache") as record:
        engine = conf.engine()
    assert [layer.name for layer in engine.layers] == ["memory"]
    assert engine.local is not None and engine.local.ttl is None
    caches_entry, cachekit = equivalent(str(record[0].message))
    assert caches_entry == entry(NAMESPACE="cachekit") and cachekit == {"CACHE": "cachekit"}
    with override_settings(CACHES={"default": locmem, "cachekit": caches_entry}, CACHEKIT=cachekit):
        assert conf.engine().namespace == "cachekit"  # and no warning
