"""CachekitCache and the engines behind it: namespaces, OPTIONS, LOCATION, shared engines (the
one-configuration rules themselves are in ``test_one_configuration``)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from cachekit_django import conf
from cachekit_django.cache import CachekitCache

BACKEND = "cachekit_django.cache.CachekitCache"


def make(location: Any = "", **options: Any) -> CachekitCache:
    return CachekitCache(location, {"OPTIONS": options} if options else {})


@pytest.mark.parametrize(
    ("prefix", "namespace"),
    [("", "django"), ("shop", "shop"), ("cache.v2-x", "cache.v2-x")],
)
def test_namespace_comes_from_key_prefix(prefix: str, namespace: str) -> None:
    assert CachekitCache("", {"KEY_PREFIX": prefix}).spec.namespace == namespace


def test_unsafe_key_prefixes_get_distinct_safe_namespaces() -> None:
    first = conf.default_namespace("my app:")
    second = conf.default_namespace("my app;")
    assert first != second
    assert first.startswith("my_app_-")
    assert len(conf.default_namespace("x" * 100)) <= 64


def test_options_are_validated() -> None:
    assert make(NAMESPACE="explicit").spec.namespace == "explicit"
    with pytest.raises(ImproperlyConfigured, match="NAMESPACE"):
        make(NAMESPACE="no spaces")
    with pytest.raises(ImproperlyConfigured, match="SOKET_TIMEOUT"):
        make("redis://127.0.0.1:1/0", SOKET_TIMEOUT=1)


def test_locations(redis_url: str) -> None:
    assert make([redis_url, "redis://replica:6379/0"]).spec.redis_url == redis_url
    first, second = make("first"), make("second")  # named in-process stores, as LocMem
    first.set("k", 1)
    assert second.get("k") is None
    assert make("first").get("k") == 1
    assert make(redis_url, L1=False).engine.layers[0].name == "redis"


def test_aliases_and_threads_share_one_engine(redis_caches: str) -> None:
    def engine() -> object:
        cache = caches["default"]
        assert isinstance(cache, CachekitCache)
        return cache.engine

    engines: list[object] = []
    thread = threading.Thread(target=lambda: engines.append(engine()))
    thread.start()
    thread.join()
    assert engines == [engine()]


def test_deprecated_cachekit_setting_still_builds_the_engine(redis_url: str) -> None:
    config = {
        "LAYERS": [
            {"BACKEND": "memory", "MAXSIZE": 100, "TTL": 5},
            {"BACKEND": "redis", "URL": redis_url, "SOCKET_TIMEOUT": 0.5},
        ],
        "NAMESPACE": "shop",
        "DEFAULT_TTL": 60,
    }
    with override_settings(CACHEKIT=config):
        with pytest.warns(DeprecationWarning, match="CACHES"):
            cache = conf.get_cache()
        assert cache is conf.get_cache()
        assert (cache.namespace, [layer.name for layer in cache.layers]) == (
            "shop",
            ["memory", "redis"],
        )
        cache.set("k", "v")
        assert cache.get("k") == "v"
    assert conf.get_cache() is not cache  # rebuilt from the restored settings: CACHES["default"]
    default = caches["default"]
    assert isinstance(default, CachekitCache) and conf.get_cache() is default.engine
    assert [layer.name for layer in conf.get_cache().layers] == ["memory"]
    with (
        override_settings(CACHEKIT={"LAYERS": [{"BACKEND": "memcached"}]}),
        pytest.raises(ImproperlyConfigured, match="BACKEND"),
    ):
        conf.get_cache()


def test_backends_follow_the_engine_after_close_all() -> None:
    # Django keeps its backend object per thread; a closed engine must not stay behind in it,
    # or the pages (conf.engine()) and this thread's cache API would use different engines.
    cache = caches["default"]
    assert isinstance(cache, CachekitCache)
    before = cache.engine
    cache.set("k", 1)
    conf.close_all()
    assert cache.engine is not before and cache.engine is conf.engine()
    assert cache.get("k") is None  # in-process: the store went with the engine


def test_engines_are_per_event_loop_safe() -> None:
    # Two loops in turn: the engine keeps one asyncio client per loop.
    cache = make()

    async def roundtrip(value: int) -> Any:
        await cache.aset("k", value)
        return await cache.aget("k")

    assert asyncio.run(roundtrip(1)) == 1
    assert asyncio.run(roundtrip(2)) == 2


def test_cluster_option_and_url(cluster_url: str, redis_cluster: Any) -> None:
    seed = cluster_url.replace("redis+cluster://", "redis://")
    for cache in (make(cluster_url), make(seed, CLUSTER=True)):
        assert cache.engine.layers[-1].cluster
        cache.set_many({f"k{i}": i for i in range(20)})
        assert cache.get_many([f"k{i}" for i in range(20)]) == {f"k{i}": i for i in range(20)}
        cache.clear()
    entry = {"BACKEND": BACKEND, "LOCATION": seed, "OPTIONS": {"CLUSTER": True, "NAMESPACE": "cl"}}
    with override_settings(CACHES={"default": entry}):
        conf.get_cache().set("x", 1)
        assert conf.get_cache().get("x") == 1
        from cachekit_django import checks

        assert checks.check_redis() == []  # PING through the cluster client
