"""cachekit_django.sessions beyond Django's own suite: outages never log anyone out,
write-through, and the async methods."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.middleware import SessionMiddleware
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings

from cachekit_core import CacheUnavailable, ReadStatus, RedisLayer
from cachekit_django.cache import CachekitCache
from cachekit_django.sessions import KEY_PREFIX, SessionStore
from tests.support.redis_server import RedisServer

BACKEND = "cachekit_django.cache.CachekitCache"
WRITE_THROUGH = {"SESSIONS": {"WRITE_THROUGH": True}}


@pytest.fixture
def outage_caches(private_redis: RedisServer) -> Iterator[RedisServer]:
    """CACHES on a Redis the test may kill or freeze, with short timeouts."""
    options = {"SOCKET_TIMEOUT": 0.2, "BREAKER_COOLDOWN": 0.2}
    caches_setting = {
        "default": {"BACKEND": BACKEND, "LOCATION": private_redis.url, "OPTIONS": options}
    }
    with override_settings(CACHES=caches_setting):
        yield private_redis


def logged_in(**extra: Any) -> SessionStore:
    session = SessionStore()
    session["_auth_user_id"] = "42"
    session.update(extra)
    session.save()
    return session


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_sessions_live_in_the_cache_and_never_query_the_database(redis_caches: str) -> None:
    # No django_db mark: any query would fail this test.
    session = logged_in(cart=[1, 2])
    stored = caches["default"].get(KEY_PREFIX + str(session.session_key))
    assert stored == {"_auth_user_id": "42", "cart": [1, 2]}
    assert SessionStore(session.session_key)["cart"] == [1, 2]
    SessionStore.clear_expired()  # cache entries expire by TTL: no DELETE query either


def test_killed_redis_keeps_the_session_key(outage_caches: RedisServer) -> None:
    session = logged_in()
    key = session.session_key
    outage_caches.stop()
    during = SessionStore(key)
    assert during.get("_auth_user_id") is None  # unreadable for now...
    assert during.session_key == key  # ...but not "unknown": the key is kept, not cycled
    assert during.exists(key) is False
    during["cart"] = [1]
    during.save()  # does not raise, and does not write the partial data anywhere
    assert during.session_key == key


def test_frozen_redis_never_overwrites_or_drops_the_session(outage_caches: RedisServer) -> None:
    session = logged_in(cart=["book"])
    key = session.session_key
    outage_caches.freeze()
    try:
        during = SessionStore(key)
        during["cart"] = []  # built on an unreadable (empty-looking) session
        during.save()
        assert during.session_key == key
    finally:
        outage_caches.thaw()
    assert eventually(lambda: SessionStore(key).get("cart") == ["book"])
    assert SessionStore(key)["_auth_user_id"] == "42"


def test_outage_through_the_middleware_keeps_the_cookie(outage_caches: RedisServer) -> None:
    key = str(logged_in().session_key)
    outage_caches.stop()
    seen: list[Any] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(request.session.get("_auth_user_id"))
        request.session["last_page"] = "/cart/"
        return HttpResponse("ok")

    request = RequestFactory().get("/cart/")
    request.COOKIES["sessionid"] = key
    response = SessionMiddleware(view)(request)
    assert isinstance(response, HttpResponse)
    assert response.status_code == 200
    assert seen == [None]
    cookie = response.cookies.get("sessionid")
    assert cookie is None or cookie.value == key  # never deleted, never replaced


def test_deleting_a_session_during_an_outage_raises(outage_caches: RedisServer) -> None:
    session = logged_in()
    outage_caches.stop()
    with pytest.raises(CacheUnavailable):
        session.flush()  # a logout must not silently leave the session usable


def test_creating_a_session_during_an_outage_raises(outage_caches: RedisServer) -> None:
    outage_caches.stop()
    session = SessionStore()
    session["cart"] = [1]
    with pytest.raises(CacheUnavailable):
        session.save()  # whether the key is taken is unknown: no key that was never stored


async def test_async_create_and_delete_during_an_outage_raise(
    outage_caches: RedisServer, aclose_engines: None
) -> None:
    session = SessionStore()
    await session.aset("_auth_user_id", "42")
    await session.asave()
    outage_caches.stop()
    with pytest.raises(CacheUnavailable):
        await session.aflush()
    with pytest.raises(CacheUnavailable):
        await SessionStore().acreate()


def test_a_logout_elsewhere_is_seen_at_once(redis_caches: str) -> None:
    session = logged_in()
    key = str(session.session_key)
    cache = caches["default"]
    assert isinstance(cache, CachekitCache)
    # Another process deletes the session in Redis; this process's L1 copy is not asked.
    client = redis.Redis.from_url(redis_caches)
    client.delete(cache.engine.keyspace.record(cache.make_key(KEY_PREFIX + key)))
    client.close()
    again = SessionStore(key)
    assert again.load() == {}
    assert again.session_key is None  # unknown: never reused
    assert again.exists(key) is False


PLAIN_CACHES = {
    "default": {"BACKEND": BACKEND},
    "sessions": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "s"},
}


class FailingReads(LocMemCache):
    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("down")


def test_a_plain_django_cache_alias_works_through_its_api() -> None:
    with override_settings(CACHES=PLAIN_CACHES, SESSION_CACHE_ALIAS="sessions"):
        session = logged_in(cart=[1])
        key = str(session.session_key)
        assert caches["sessions"].get(KEY_PREFIX + key) == {"_auth_user_id": "42", "cart": [1]}
        assert SessionStore(key)["cart"] == [1]
        assert SessionStore(key).exists(key) is True
        session.flush()
        assert SessionStore(key).exists(key) is False
        assert SessionStore(key).load() == {}


def test_a_plain_cache_that_raises_on_read_keeps_the_session_key() -> None:
    failing = {**PLAIN_CACHES, "sessions": {"BACKEND": f"{__name__}.FailingReads"}}
    with override_settings(CACHES=failing, SESSION_CACHE_ALIAS="sessions"):
        key = str(logged_in().session_key)
        during = SessionStore(key)
        assert during.load() == {}
        assert during.session_key == key  # taken for unreachable, not for unknown
        during["cart"] = [1]
        during.save()  # skipped: the stored session is not overwritten with unread data
        assert LocMemCache.get(caches["sessions"], KEY_PREFIX + key) == {"_auth_user_id": "42"}


async def test_a_plain_django_cache_alias_async(aclose_engines: None) -> None:
    with override_settings(CACHES=PLAIN_CACHES, SESSION_CACHE_ALIAS="sessions"):
        session = SessionStore()
        await session.aset("n", 1)
        await session.asave()
        key = str(session.session_key)
        assert await SessionStore(key).aget("n") == 1
        assert await session.aexists(key) is True
        await session.adelete()
        assert await session.aexists(key) is False


@pytest.mark.django_db
def test_write_through_falls_back_to_the_database(
    outage_caches: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(CACHEKIT=WRITE_THROUGH):
        key = logged_in().session_key
        assert Session.objects.filter(session_key=key).exists()
        outage_caches.stop()
        during = SessionStore(key)
        assert during["_auth_user_id"] == "42"  # from the database
        during["cart"] = [7]
        with caplog.at_level(logging.ERROR, "django.contrib.sessions"):
            during.save()
        assert "Error saving to cache" in caplog.text
        assert SessionStore(key)["cart"] == [7]
        assert SessionStore(key).exists(key) is True


@pytest.mark.django_db
def test_write_through_does_not_serve_the_copy_a_failed_write_left(redis_caches: str) -> None:
    with override_settings(CACHEKIT=WRITE_THROUGH):
        key = logged_in(cart=["old"]).session_key
        # The sessions' Redis client fails (its circuit is open) while Redis keeps the old copy.
        cache = caches["default"]
        assert isinstance(cache, CachekitCache)
        redis = cache.engine.shared
        assert isinstance(redis, RedisLayer)
        redis.breaker.cooldown = 0.3
        redis.breaker.failure(timeout=True)
        during = SessionStore(key)
        during["cart"] = ["new"]
        during.save()  # the database has "new"; the cache write failed
        time.sleep(0.35)  # the circuit closes again: reads go to Redis
        assert SessionStore(key).get("cart") == ["new"]


@pytest.mark.django_db
def test_write_through_as_a_subclass(redis_caches: str) -> None:
    class DBSessionStore(SessionStore):
        write_through = True

    session = DBSessionStore()
    session["x"] = 1
    session.save()
    row = Session.objects.get(session_key=session.session_key)
    assert row.get_decoded() == {"x": 1}
    row.expire_date = row.expire_date.replace(year=2000)
    row.save()
    DBSessionStore.clear_expired()
    assert not Session.objects.filter(session_key=session.session_key).exists()


THREADS: list[int] = []


def _probe_loaded() -> Probe:
    THREADS.append(threading.get_ident())
    return Probe()


class Probe:
    def __reduce__(self) -> tuple[Any, ...]:
        THREADS.append(threading.get_ident())
        return (_probe_loaded, ())


async def test_async_session_api_stays_in_the_event_loop(
    redis_caches: str, aclose_engines: None
) -> None:
    THREADS.clear()
    session = SessionStore()
    await session.aset("probe", Probe())
    await session.asave()
    key = session.session_key
    assert await session.aexists(key) is True
    again = SessionStore(key)
    assert isinstance(await again.aget("probe"), Probe)
    await again.aset("n", 1)
    await again.asave()
    assert (await SessionStore(key).aitems()) is not None
    await again.adelete()
    assert await session.aexists(key) is False
    fresh = SessionStore()
    await fresh.acreate()
    assert await fresh.aexists(fresh.session_key) is True
    assert THREADS
    assert set(THREADS) == {threading.get_ident()}


async def test_async_load_during_an_outage_keeps_the_key(
    outage_caches: RedisServer, aclose_engines: None
) -> None:
    session = SessionStore()
    await session.aset("_auth_user_id", "42")
    await session.asave()
    key = session.session_key
    outage_caches.stop()
    during = SessionStore(key)
    assert await during.aload() == {}
    assert during.session_key == key
    await during.aset("cart", [1])
    await during.asave()  # skipped, not raised
    assert during.session_key == key


def test_one_timeout_per_request_across_engines(private_redis: RedisServer) -> None:
    """Every engine cachekit_django builds for one Redis shares its breaker: the pages' engine
    (CACHES["pages"]) and another alias's (CACHES["default"], which sessions read past L1). A
    request that meets a frozen Redis in both waits one timeout, not two."""
    from cachekit_django import conf

    options = {"SOCKET_TIMEOUT": 0.2, "BREAKER_COOLDOWN": 5}
    caches_setting = {
        alias: {
            "BACKEND": BACKEND,
            "LOCATION": private_redis.url,
            "OPTIONS": {**options, "NAMESPACE": alias},  # two stores: two engines
        }
        for alias in ("default", "pages")
    }
    with override_settings(CACHES=caches_setting, CACHEKIT={"CACHE": "pages"}):
        page_engine = conf.engine()
        default = caches["default"]
        assert isinstance(default, CachekitCache)
        assert page_engine is not default.engine
        for engine in (page_engine, default.engine):
            engine.get("warm")  # connections open, breakers closed
        private_redis.freeze()
        try:
            started = time.monotonic()
            assert page_engine.get("page") is None  # meets the hung server: one timeout
            assert default.get("fragment") is None  # breaker already open: skipped
            # What a session read asks: says "unreachable" at once, not "missing".
            assert default.read("session", local=False) == (ReadStatus.UNAVAILABLE, None)
            took = time.monotonic() - started
        finally:
            private_redis.thaw()
        assert 0.18 < took < 0.35, took
        conf.close_all()


def test_clear_and_an_overflow_of_failed_writes_keep_every_session(
    outage_caches: RedisServer,
) -> None:
    """Issue 11.1: sessions are records of the engine: cache.clear() and the replay of an
    overflowed queue of lost invalidations (10,050 junk writes during an outage) never touch
    them, while the cache's own entries go."""
    cache = caches["default"]
    assert isinstance(cache, CachekitCache)
    key = str(logged_in(cart=[1]).session_key)
    cache.set("page", "cached")
    cache.clear()
    assert cache.get("page") is None
    assert SessionStore(key).load() == {"_auth_user_id": "42", "cart": [1]}
    cache.set("page", "cached again")
    outage_caches.freeze()
    try:
        for i in range(10_050):
            cache.set(f"/search?q={i}", "junk")
    finally:
        outage_caches.thaw()
    assert eventually(lambda: cache.engine.reachable() or cache.get("probe") is None)
    time.sleep(0.3)
    cache.set("after", 1)  # the first call after the outage replays the (overflowed) queue
    assert cache.get("page") is None
    assert SessionStore(key).load() == {"_auth_user_id": "42", "cart": [1]}


def test_a_save_racing_a_logout_never_brings_the_session_back(redis_caches: str) -> None:
    """Issue 11.4: the update of an existing session is one SET XX (the engine's replace), so a
    request that loaded the session before a logout cannot save it back after."""
    key = str(logged_in(cart=[1]).session_key)
    in_flight = SessionStore(key)
    assert in_flight.get("cart") == [1]  # the request has read its session
    SessionStore(key).delete()  # the logout lands while that request runs
    in_flight["cart"] = [1, 2]
    with pytest.raises(UpdateError):
        in_flight.save()
    assert SessionStore(key).load() == {}
