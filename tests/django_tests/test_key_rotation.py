"""Issue 11, item 12: rotating ``SECRET_KEY`` with the old one in ``SECRET_KEY_FALLBACKS`` keeps
every session and cached value readable; what is written afterwards is signed with the new key.
(Item 6 for Django: every CachekitCache engine is signed, with a key derived from SECRET_KEY.)"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from cachekit_django import conf
from cachekit_django.cache import CachekitCache
from cachekit_django.sessions import SessionStore

BACKEND = "cachekit_django.cache.CachekitCache"
OLD, NEW = "rotation-test-old-secret-key", "rotation-test-new-secret-key"


@contextmanager
def secret(key: str, *fallbacks: str) -> Iterator[None]:
    """Run with this SECRET_KEY and SECRET_KEY_FALLBACKS (engines are rebuilt for it)."""
    with override_settings(SECRET_KEY=key, SECRET_KEY_FALLBACKS=list(fallbacks)):
        yield
    conf.close_all()  # the next block must not see this one's L1


def corrupt() -> int:
    return int(conf.engine().stats()["corrupt"])


def test_a_rotated_secret_key_keeps_cached_values_readable(redis_caches: str) -> None:
    with secret(OLD):
        caches["default"].set("price", 42, 600)
        caches["default"].set("untouched", "old", 600)
    with secret(NEW):  # the old key is gone: what it signed is a (counted) miss
        assert caches["default"].get("price") is None
        assert corrupt() == 1
    with secret(NEW, OLD):
        assert caches["default"].get("price") == 42
        assert caches["default"].get("untouched") == "old"
        caches["default"].set("price", 43, 600)  # written after the rotation...
    with secret(NEW):  # ...is signed with the new key alone
        assert caches["default"].get("price") == 43
    with secret(OLD):
        assert caches["default"].get("price") is None
        assert caches["default"].get("untouched") == "old"


def test_a_rotated_secret_key_keeps_everyone_logged_in(redis_caches: str) -> None:
    with secret(OLD):
        session = SessionStore()
        session["_auth_user_id"] = "42"
        session.save()
        key = session.session_key
    assert key is not None
    with secret(NEW):
        assert SessionStore(key).load() == {}  # without the fallback: logged out
    with secret(NEW, OLD):
        store = SessionStore(key)
        assert store.load() == {"_auth_user_id": "42"}
        store["cart"] = [1]
        store.save()
    with secret(NEW):  # saved after the rotation: signed with the new key
        assert SessionStore(key).load() == {"_auth_user_id": "42", "cart": [1]}


async def test_fallbacks_on_the_async_path(redis_caches: str) -> None:
    # Each engine's asyncio clients are closed on this loop before the settings change.
    with override_settings(SECRET_KEY=OLD):
        await caches["default"].aset("k", "v", 600)
        await conf.aclose_all()
    with override_settings(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[OLD]):
        assert await caches["default"].aget("k") == "v"
        await conf.aclose_all()


def test_changing_the_fallbacks_rebuilds_the_engine(redis_caches: str) -> None:
    with override_settings(SECRET_KEY=NEW):
        before = conf.engine()
        assert before.secret_key_fallbacks == ()
        with override_settings(SECRET_KEY_FALLBACKS=[OLD]):
            after = conf.engine()
            assert after is not before
            assert after.secret_key_fallbacks == (conf.fallback_signing_keys("cache")[0],)
            # Derived per purpose from the old secret, as the current key is from SECRET_KEY.
            with override_settings(SECRET_KEY=OLD, SECRET_KEY_FALLBACKS=[]):
                assert conf.signing_key("cache") == after.secret_key_fallbacks[0]


def test_options_secret_key_fallbacks_rotate_an_explicit_key(redis_url: str) -> None:
    def alias(options: dict[str, Any]) -> dict[str, Any]:
        return {"default": {"BACKEND": BACKEND, "LOCATION": redis_url, "OPTIONS": options}}

    with override_settings(CACHES=alias({"SECRET_KEY": OLD})):
        caches["default"].set("k", "v", 600)
    conf.close_all()
    with override_settings(CACHES=alias({"SECRET_KEY": NEW})):
        assert caches["default"].get("k") is None
    conf.close_all()
    with override_settings(CACHES=alias({"SECRET_KEY": NEW, "SECRET_KEY_FALLBACKS": [OLD]})):
        assert caches["default"].get("k") == "v"


@pytest.mark.parametrize("fallbacks", [OLD, 42])
def test_options_secret_key_fallbacks_must_be_a_list(fallbacks: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY_FALLBACKS"):
        CachekitCache(
            "redis://127.0.0.1:1/0",
            {"OPTIONS": {"SECRET_KEY": NEW, "SECRET_KEY_FALLBACKS": fallbacks}},
        )


def test_every_django_engine_is_signed(redis_caches: str) -> None:
    # Item 6: a CachekitCache on Redis never needs allow_unsigned (SECRET_KEY is always set).
    assert conf.engine().secret_key == conf.signing_key("cache")
    assert conf.engine().shared is not None
