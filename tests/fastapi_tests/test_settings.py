"""One settings object: ``HttpSettings`` checks every value, whichever way it is given.

``CacheMiddleware(**options)``, ``CacheKit(**options)`` and ``HttpSettings.from_mapping``
(Django-style UPPER_CASE keys) all end in ``HttpSettings``, so a bad value fails the same way
with the same message; the adapter adds only FastAPI's default session cookie name.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from cachekit_core import Cache, ConfigurationError
from cachekit_core.httpcache import HttpCache, HttpSettings
from cachekit_fastapi import CacheKit, CacheMiddleware

from ._asgi import call_asgi


async def raw(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"cache-control", b"max-age=60")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"raw"})


BAD_VALUES = [
    ("max_body_size", -1, "must be an integer >= 0"),
    ("max_body_size", "1MB", "must be an integer >= 0"),
    ("max_body_size", True, "must be an integer >= 0"),
    (
        "cacheable_statuses",
        [200, 404],
        "must be a collection of 2xx/3xx statuses other than 206 and 304",
    ),
    (
        "cacheable_statuses",
        [200, 304],
        "must be a collection of 2xx/3xx statuses other than 206 and 304",
    ),
    (
        "cacheable_statuses",
        ["200"],
        "must be a collection of 2xx/3xx statuses other than 206 and 304",
    ),
    ("cacheable_statuses", 200, "must be a collection of 2xx/3xx statuses other than 206 and 304"),
    (
        "cacheable_statuses",
        "200",
        "must be a collection of 2xx/3xx statuses other than 206 and 304",
    ),
    ("shared_cache", "yes", "must be True or False"),
    ("honour_request_no_cache", 1, "must be True or False"),
    ("header_name", 42, "must be a string or None"),
    ("header_name", "X Cache", "must be a header field name"),
    ("header_name", "X-Cache\r\nSet-Cookie: a=b", "must be a header field name"),
    ("cdn_cache_control", "max-age=60\r\nX: y", "must not contain control characters"),
    ("session_cookie", b"session", "must be a string or None"),
]


def message_of(build: Any) -> str:
    with pytest.raises(ConfigurationError) as caught:
        build()
    return str(caught.value)


@pytest.mark.parametrize(("name", "value", "problem"), BAD_VALUES)
def test_a_bad_value_fails_the_same_way_from_keywords_and_from_a_mapping(
    name: str, value: Any, problem: str
) -> None:
    cache = Cache()
    messages = {
        message_of(lambda: HttpSettings(**{name: value})),
        message_of(lambda: HttpSettings.from_mapping({name.upper(): value})),
        message_of(lambda: CacheMiddleware(raw, cache=cache, **{name: value})),
        message_of(lambda: CacheKit(FastAPI(), cache, **{name: value})),
    }
    assert messages == {f"HTTP setting {name} ({name.upper()}) {problem}, not {value!r}"}


def test_from_mapping_names_the_valid_keys() -> None:
    with pytest.raises(ConfigurationError) as caught:
        HttpSettings.from_mapping({"SHARED": True})
    assert str(caught.value) == (
        "unknown HTTP setting 'SHARED'; valid keys: HEADER_NAME, CDN_CACHE_CONTROL, "
        "HONOUR_REQUEST_NO_CACHE, MAX_BODY_SIZE, CACHEABLE_STATUSES, SESSION_COOKIE, SHARED_CACHE, "
        "DEBUG_HEADERS, SURROGATE_CONTROL"
    )
    with pytest.raises(ConfigurationError, match="unknown HTTP setting 'shared_cache'"):
        HttpSettings.from_mapping({"shared_cache": True})  # UPPER_CASE keys only
    with pytest.raises(ConfigurationError, match="must be a mapping"):
        HttpSettings.from_mapping([("SHARED_CACHE", True)])  # type: ignore[arg-type]


def test_from_mapping_overrides_are_the_callers_own() -> None:
    # Django takes the session cookie from SESSION_COOKIE_NAME: the mapping may not set it.
    settings = HttpSettings.from_mapping({"MAX_BODY_SIZE": 10}, session_cookie="sessionid")
    assert (settings.max_body_size, settings.session_cookie) == (10, "sessionid")
    with pytest.raises(ConfigurationError) as caught:
        HttpSettings.from_mapping({"SESSION_COOKIE": "x"}, session_cookie="sessionid")
    assert "SESSION_COOKIE" not in str(caught.value).partition("valid keys:")[2]
    with pytest.raises(TypeError, match="session_cookies"):
        HttpSettings.from_mapping({}, session_cookies="x")


def test_values_are_normalised() -> None:
    settings = HttpSettings.from_mapping(
        {"HEADER_NAME": "", "CACHEABLE_STATUSES": [200, 203], "CDN_CACHE_CONTROL": ""}
    )
    assert settings.header_name is None and settings.cdn_cache_control is None
    assert settings.cacheable_statuses == frozenset({200, 203})
    assert HttpSettings.from_mapping({"HEADER_NAME": None}).header_name is None
    assert HttpSettings.from_mapping({}) == HttpSettings()
    statuses: Any = range(200, 202)  # any collection of 2xx integers, kept as a frozenset
    assert HttpSettings(cacheable_statuses=statuses).cacheable_statuses == {200, 201}


def test_fastapi_defaults_and_an_explicit_settings_object() -> None:
    cache = Cache()
    default = CacheMiddleware(raw, cache=cache).http.settings
    assert default == HttpSettings(session_cookie="session")  # Starlette's cookie name
    assert CacheKit(FastAPI(), cache).http.settings == default
    assert CacheMiddleware(raw, cache, shared_cache=True).http.settings.shared_cache
    # An explicit object is used as it is; keywords next to it replace its fields.
    mine = HttpSettings(header_name="X-Mine")
    assert CacheMiddleware(raw, cache=cache, settings=mine).http.settings is mine
    both = CacheKit(FastAPI(), cache, settings=mine, max_body_size=10).http.settings
    assert both == HttpSettings(header_name="X-Mine", max_body_size=10)
    with pytest.raises(ConfigurationError, match="MAX_BODY_SIZE"):
        CacheMiddleware(raw, cache=cache, settings=mine, max_body_size=-1)


def test_unknown_keywords_and_conflicting_arguments_are_type_errors() -> None:
    cache = Cache()
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'shared'.*shared_cache"):
        CacheMiddleware(raw, cache=cache, shared=True)
    with pytest.raises(TypeError, match=r"CacheKit.*'max_body'"):
        CacheKit(FastAPI(), cache, max_body=10)
    with pytest.raises(TypeError, match="HttpSettings"):
        CacheMiddleware(raw, cache=cache, settings={"shared_cache": True})  # type: ignore[arg-type]
    shared = HttpCache(cache, HttpSettings())
    for extra in ({"shared_cache": True}, {"cache": cache}, {"settings": HttpSettings()}):
        with pytest.raises(TypeError, match="http="):
            CacheMiddleware(raw, http=shared, **extra)


async def test_a_settings_object_drives_the_middleware() -> None:
    settings = HttpSettings.from_mapping({"SHARED_CACHE": True, "HEADER_NAME": "X-Shop"})
    app = CacheMiddleware(raw, cache=Cache(), settings=settings)
    first, second = await call_asgi(app, path="/x"), await call_asgi(app, path="/x")
    assert (first.header("x-shop"), second.header("x-shop")) == ("MISS", "HIT")
    assert first.header("x-cache") is None
