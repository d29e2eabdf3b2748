"""Issue 10 (Django): what a page's key covers, what the cache leaves alone, cache_view on its
own, and pages with forms.

- Item 3: with USE_I18N the active language, with USE_TZ the current time zone are part of
  the key (as Django's cache_page keys them), with LocaleMiddleware in W002's order.
- Item 4: a view that is not cached costs nothing (no Redis command, no lookup, no header)
  and passes through as the very response it returned (HEAD included); a ``no-store``
  response never gets a validator or a 304.
- Item 8: cache_view without CacheMiddleware stores and serves; a 304 the view returns
  carries the Cache-Control its 200 would.
- Item 5: a page with {% csrf_token %} is stored without the token and served with each
  client's own token and cookie: both clients' POSTs pass CSRF checks.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from cachekit_django._pages import _placeholder
from cachekit_django.middleware import get_http_cache

from .shopapp.testing import CACHE_MIDDLEWARE, use_cachekit, x_cache

pytestmark = pytest.mark.django_db

SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
LOCALE = "django.middleware.locale.LocaleMiddleware"
COMMON = "django.middleware.common.CommonMiddleware"
CSRF = "django.middleware.csrf.CsrfViewMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
TZ = "tests.django_tests.pages_urls.TimeZoneMiddleware"
# The order check W002 asks for: CacheMiddleware above the ones that add cookies or Vary.
MIDDLEWARE = [SESSION, LOCALE, COMMON, CSRF, AUTH, TZ]


@pytest.fixture(autouse=True)
def _pages(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.django_tests.pages_urls"
    settings.LANGUAGES = [("en", "English"), ("de", "German")]
    settings.LANGUAGE_CODE = "en"
    use_cachekit(settings, middleware=MIDDLEWARE)


def n_of(response: Any) -> int:
    match = re.search(rb"n=(\d+)", response.content)
    assert match is not None, response.content
    return int(match.group(1))


def lang_of(response: Any) -> str:
    match = re.search(rb"lang=(\w+)", response.content)
    assert match is not None, response.content
    return match.group(1).decode()


# =========================================================================== item 3


def test_the_check_is_happy_with_this_order() -> None:
    from cachekit_django.checks import check_middleware

    assert check_middleware() == []


def test_a_page_cached_for_a_language_cookie_is_never_served_to_another_language() -> None:
    german = Client()
    german.cookies[django_settings.LANGUAGE_COOKIE_NAME] = "de"
    de = german.get("/pages/lang/")
    assert lang_of(de) == "de" and x_cache(de) == "MISS"
    assert x_cache(german.get("/pages/lang/")) == "HIT"  # German visitors share it
    anonymous = Client().get("/pages/lang/")
    assert lang_of(anonymous) == "en" and x_cache(anonymous) == "MISS"
    assert lang_of(Client().get("/pages/lang/")) == "en"
    again = german.get("/pages/lang/")
    assert lang_of(again) == "de" and n_of(again) == n_of(de)


def test_accept_language_and_url_prefix_get_their_own_pages(settings: Any) -> None:
    de = Client().get("/pages/lang/", headers={"Accept-Language": "de"})
    en = Client().get("/pages/lang/", headers={"Accept-Language": "en"})
    assert (lang_of(de), lang_of(en)) == ("de", "en")
    assert lang_of(Client().get("/pages/lang/")) == "en"
    settings.ROOT_URLCONF = "tests.django_tests.pages_i18n_urls"
    prefixed = Client().get("/de/prefixed/")
    assert lang_of(prefixed) == "de"
    assert x_cache(Client().get("/de/prefixed/")) == "HIT"
    unprefixed = Client().get("/prefixed/")
    assert lang_of(unprefixed) == "en" and x_cache(unprefixed) == "MISS"
    # A German Accept-Language on the unprefixed (English) URL: still the English page.
    assert lang_of(Client().get("/prefixed/", headers={"Accept-Language": "de"})) == "en"


def test_the_time_zone_is_part_of_the_key(settings: Any) -> None:
    settings.TIME_ZONE = "UTC"
    tokyo = Client()
    tokyo.cookies["tz"] = "Asia/Tokyo"
    first = tokyo.get("/pages/lang/")
    assert b"tz=Asia/Tokyo" in first.content
    default = Client().get("/pages/lang/")
    assert f"tz={django_settings.TIME_ZONE}".encode() in default.content
    assert x_cache(default) == "MISS"
    assert n_of(tokyo.get("/pages/lang/")) == n_of(first)


def test_without_i18n_and_tz_the_key_has_neither(settings: Any) -> None:
    from django.test import RequestFactory

    from cachekit_django._pages import key_variant

    settings.USE_I18N = False
    settings.USE_TZ = False
    assert key_variant(RequestFactory().get("/")) == ""


# =========================================================================== item 4


def test_an_undecorated_view_costs_no_redis_command(settings: Any, private_redis: Any) -> None:
    use_cachekit(settings, redis_url=private_redis.url, middleware=MIDDLEWARE)
    client = Client()
    assert x_cache(client.get("/pages/lang/")) == "MISS"  # the engine is up and connected
    layers = get_http_cache().cache.stats()["layers"]
    misses = sum(layer["misses"] for layer in layers.values())
    private_redis.cli("CONFIG", "RESETSTAT")
    for _ in range(1000):
        response = client.get("/pages/plain/")
        assert x_cache(response) is None and "ETag" not in response.headers
    stats = private_redis.cli("INFO", "commandstats")
    commands = re.findall(r"cmdstat_([\w|]+):calls=(\d+)", stats)
    sent = [(name, calls) for name, calls in commands if name not in ("info", "config|resetstat")]
    assert sent == [], stats
    layers = get_http_cache().cache.stats()["layers"]
    assert sum(layer["misses"] for layer in layers.values()) == misses  # none counted


def test_what_passes_through_keeps_its_identity() -> None:
    client = Client()
    head = client.head("/pages/plain-redirect/", follow=True)
    assert head.status_code == 200 and head.redirect_chain == [("/pages/plain/", 302)]
    json = client.head("/pages/json/")
    assert type(json).__name__ == "JsonResponse"
    # A cached view's redirect, on a miss and on a HEAD: still a redirect with its url.
    for _ in range(2):
        cached = client.head("/pages/redirect/", follow=True)
        assert cached.redirect_chain == [("/pages/plain/", 302)]
    miss = Client().get("/pages/redirect/")
    assert miss.url == "/pages/plain/"  # type: ignore[attr-defined]


def test_head_of_a_cached_view_keeps_its_class() -> None:
    response = Client().head("/pages/redirect/?k=1")
    assert type(response).__name__ == "HttpResponseRedirect" and response.content == b""


def test_no_validator_or_304_on_a_no_store_response() -> None:
    client = Client()
    first = client.get("/pages/no-store/")
    assert "ETag" not in first.headers and first.headers["Cache-Control"] == "no-store"
    again = client.get("/pages/no-store/", headers={"If-None-Match": "*"})
    assert again.status_code == 200 and n_of(again) > n_of(first)


# =========================================================================== item 8


def test_cache_view_on_its_own(settings: Any) -> None:
    settings.MIDDLEWARE = MIDDLEWARE  # no CacheMiddleware
    german = Client()
    german.cookies[django_settings.LANGUAGE_COOKIE_NAME] = "de"
    de = german.get("/pages/lang/")
    assert x_cache(de) == "MISS" and x_cache(german.get("/pages/lang/")) == "HIT"
    en = Client().get("/pages/lang/")
    assert lang_of(en) == "en" and x_cache(en) == "MISS"
    assert "ETag" not in Client().get("/pages/plain/").headers


@pytest.mark.parametrize("middleware", [True, False], ids=["middleware", "alone"])
def test_a_304_from_the_view_carries_the_cache_control_of_its_200(
    settings: Any, middleware: bool
) -> None:
    if not middleware:
        settings.MIDDLEWARE = MIDDLEWARE
    client = Client()
    full = client.get("/pages/validated/?k=1", headers={"Cache-Control": "no-cache"})
    assert full.headers["Cache-Control"] == "public, max-age=60"
    own = Client().get("/pages/validated/?k=2", headers={"If-None-Match": '"v1"'})
    assert own.status_code == 304 and own.headers["Cache-Control"] == "public, max-age=60"


# =========================================================================== item 5


def _token(response: Any) -> str:
    match = re.search(rb'name="csrfmiddlewaretoken" value="([A-Za-z0-9]+)"', response.content)
    assert match is not None, response.content
    return match.group(1).decode()


@pytest.mark.parametrize("middleware", [True, False], ids=["middleware", "alone"])
def test_a_cached_form_gives_each_client_its_own_token(settings: Any, middleware: bool) -> None:
    if not middleware:
        settings.MIDDLEWARE = MIDDLEWARE
    ada, bob = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    first = ada.get("/pages/form/")
    assert x_cache(first) == "MISS"
    served = bob.get("/pages/form/")
    assert x_cache(served) == "HIT" and n_of(served) == n_of(first)
    cookie = django_settings.CSRF_COOKIE_NAME
    assert ada.cookies[cookie].value != bob.cookies[cookie].value  # each has a secret
    assert _token(first) != _token(served)
    assert f'const token = "{_token(served)}"'.encode() not in first.content
    # What is stored holds no token of anyone: only the placeholder (before the POSTs
    # drop the URL's page, R4).
    bodies = [repr(entry) for entry in _stored_values()]
    assert any(_placeholder().decode() in body for body in bodies)
    for page in (first, served):
        assert all(_token(page) not in body for body in bodies)
    for client, page in ((ada, first), (bob, served)):
        posted = client.post("/pages/form/", {"csrfmiddlewaretoken": _token(page), "q": "x"})
        assert posted.status_code == 200 and posted.content == b"posted x"
    # Bob's token is not Ada's: hers does not pass with his cookie.
    crossed = bob.post("/pages/form/", {"csrfmiddlewaretoken": _token(first), "q": "x"})
    assert crossed.status_code == 403
    if middleware:  # each client's page varies on its own cookie, as Django sends it
        assert "Cookie" in first.headers["Vary"] and "Cookie" in served.headers["Vary"]


def test_a_hit_sets_the_csrf_cookie_of_a_new_client() -> None:
    Client().get("/pages/form/")
    fresh = Client(enforce_csrf_checks=True)
    served = fresh.get("/pages/form/")
    assert x_cache(served) == "HIT" and django_settings.CSRF_COOKIE_NAME in served.cookies
    assert fresh.post("/pages/form/", {"csrfmiddlewaretoken": _token(served)}).status_code == 200


def test_the_etag_of_a_form_page_is_each_clients_own() -> None:
    ada, bob = Client(), Client()
    mine = ada.get("/pages/form/")
    theirs = bob.get("/pages/form/")
    assert mine.headers["ETag"].startswith("W/") and mine.headers["ETag"] != theirs.headers["ETag"]
    assert (
        ada.get("/pages/form/", headers={"If-None-Match": mine.headers["ETag"]}).status_code == 304
    )
    # Bob's ETag names his secret, not the stored page's: he gets the page, with his token.
    again = bob.get("/pages/form/", headers={"If-None-Match": theirs.headers["ETag"]})
    assert again.status_code == 200 and again.headers["ETag"] == theirs.headers["ETag"]


def test_csrf_false_pages_are_not_stored(settings: Any) -> None:
    for with_middleware in (True, False):
        if not with_middleware:
            settings.MIDDLEWARE = MIDDLEWARE
        first = Client().get("/pages/form-no-csrf/")
        second = Client().get("/pages/form-no-csrf/")
        assert x_cache(second) != "HIT" and n_of(second) > n_of(first)
        assert _token(first) != _token(second)


def _stored_values() -> list[Any]:
    """Every value in the engine's memory layer (pages and markers)."""
    local = get_http_cache().cache.local
    assert local is not None
    return [entry.value for entry in list(local.data.values())]


def test_cachemiddleware_is_at_the_top() -> None:
    assert django_settings.MIDDLEWARE[0] == CACHE_MIDDLEWARE
