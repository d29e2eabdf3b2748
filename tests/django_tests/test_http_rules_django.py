"""HTTP-RULES.md through Django: every rule that applies to a Django app, named by its id.

Most pages come from the ``echo`` view (``shopapp/views.py``): its query string sets the
status, headers and cookies it answers with, and its body counts renders, so "stored" means a
second request is a HIT with the same render. ``/echo/`` is decorated with ``cache_view``;
``/plain/`` is not (stored only in shared-cache mode, by its own headers).

Not applicable to Django, and why:
- S3/S6 "across two Cache-Control/Vary lines": a Django response holds one value per header
  name (``ResponseHeaders`` is a dict), so an app cannot send two lines; the core's own tests
  cover repeated lines.
- K5 "ASGI multi-chunk more_body" streaming is S11's StreamingHttpResponse here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.handlers.asgi import ASGIHandler
from django.test import Client

from cachekit_core.http import http_date
from cachekit_core.httpcache import Request
from cachekit_django import conf, invalidate_tags
from cachekit_django.middleware import get_http_cache

from .shopapp import views
from .shopapp.models import Product
from .shopapp.testing import page_request, renders, stored, url, use_cachekit, x_cache

pytestmark = pytest.mark.django_db

GZIP = "django.middleware.gzip.GZipMiddleware"


@pytest.fixture(autouse=True)
def _cachekit(settings: Any) -> None:
    use_cachekit(settings)


def shared(settings: Any, **http: Any) -> None:
    use_cachekit(settings, http={"SHARED_CACHE": True, **http})


class Clock:
    """Moves the engine's clock (freshness) and the HTTP layer's (Age, stored-at) forward.
    Call ``advance`` after the last settings change: new CACHES build a new engine."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self.monkeypatch.setattr(conf.get_cache(), "clock", self.now)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


# =========================================================================== storing


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"])
def test_S1_only_get_and_head_are_answered_from_storage(client: Client, method: str) -> None:
    path = "/echo/?k=s1"
    first = client.get(path)
    assert x_cache(client.head(path)) == "HIT"
    response = client.generic(method, path)
    assert renders(response) > renders(first) and x_cache(response) == "BYPASS"


@pytest.mark.parametrize("status", [201, 204, 206, 301, 302, 304, 400, 404, 410, 500, 503])
def test_S2_only_final_200_is_stored(client: Client, status: int) -> None:
    assert not stored(client, url("/echo/", status=status))


def test_S2_the_cacheable_set_is_configurable(settings: Any, client: Client) -> None:
    use_cachekit(settings, http={"CACHEABLE_STATUSES": [200, 203]})
    assert stored(client, url("/echo/", status=203))
    assert not stored(client, url("/echo/", status=404))


@pytest.mark.parametrize(
    "value",
    ["no-store", "NO-STORE", "No-Store", "public, max-age=60, no-store", " no-store ,max-age=60"],
)
@pytest.mark.parametrize("path", ["/echo/", "/plain/"])
def test_S3_no_store_in_any_case_or_position_is_never_stored(
    settings: Any, client: Client, value: str, path: str
) -> None:
    shared(settings)
    assert not stored(client, url(path, f"Cache-Control: {value}, s-maxage=60"))


@pytest.mark.parametrize(
    "value",
    ["private", "PRIVATE", 'private="Set-Cookie"', "public, private", "private, s-maxage=9"],
)
@pytest.mark.parametrize("path", ["/echo/", "/plain/"])
def test_S4_private_is_never_in_the_shared_cache(
    settings: Any, client: Client, value: str, path: str
) -> None:
    shared(settings)
    assert not stored(client, url(path, f"Cache-Control: {value}"))


@pytest.mark.parametrize("value", ["no-cache", "max-age=60, no-cache", 'no-cache="Set-Cookie"'])
def test_S5_no_cache_is_not_reused_without_running_the_view(client: Client, value: str) -> None:
    assert not stored(client, url("/echo/", f"Cache-Control: {value}"))


@pytest.mark.parametrize("vary", ["*", " * ", "*, Foo", "Foo, *", ", *", "accept,*"])
@pytest.mark.parametrize("path", ["/echo/", "/plain/"])
def test_S6_vary_star_is_never_stored(settings: Any, client: Client, vary: str, path: str) -> None:
    shared(settings)
    assert not stored(client, url(path, f"Vary: {vary}", "Cache-Control: s-maxage=60"))


@pytest.mark.parametrize("request_cookies", [{}, {"unrelated": "x"}, {"theme": "old"}])
def test_S7_responses_setting_a_cookie_are_never_stored(
    client: Client, request_cookies: dict[str, str]
) -> None:
    """No request cookies, unrelated ones, and refreshing an existing cookie (Django's
    test_sensitive_cookie_not_cached and test_refreshed_cookie_not_cached)."""
    for name, value in request_cookies.items():
        client.cookies[name] = value
    path = url("/echo/", cookie="theme=new")
    first = client.get(path)
    assert first.cookies["theme"].value == "new"
    second = client.get(path)
    assert renders(second) > renders(first) and second.cookies["theme"].value == "new"


def test_S7_a_session_cookie_written_by_the_view_is_never_stored(client: Client) -> None:
    first = client.get(url("/echo/", session="write"))
    assert first.cookies  # the session engine set its cookie
    assert not stored(Client(), url("/echo/", session="write"))


@pytest.mark.parametrize("credential", ["Bearer secret", "Basic YTpi"])
def test_S8_authorized_requests_bypass_the_shared_cache(client: Client, credential: str) -> None:
    path = "/echo/?k=s8"
    mine = client.get(path, headers={"Authorization": credential})
    assert x_cache(mine) == "BYPASS"
    public = client.get(path)
    assert x_cache(public) == "MISS" and renders(public) > renders(mine)  # never reused
    assert x_cache(client.get(path, headers={"Authorization": credential})) == "BYPASS"


def test_S8_an_empty_authorization_is_not_a_credential(client: Client) -> None:
    client.get("/echo/?k=s8e")
    assert x_cache(client.get("/echo/?k=s8e", headers={"Authorization": ""})) == "HIT"


def test_S8_a_per_user_view_opts_in(client: Client) -> None:
    client.force_login(User.objects.create_user("ada"))
    auth = {"Authorization": "Bearer ada"}
    first = client.get("/me/?k=s8", headers=auth)
    assert x_cache(first) == "MISS" and "private" in first.headers["Cache-Control"]
    assert x_cache(client.get("/me/?k=s8", headers=auth)) == "HIT"


def test_S9_the_session_cookie_bypasses_unless_per_user(settings: Any, client: Client) -> None:
    client.get("/echo/?k=s9")
    client.cookies[settings.SESSION_COOKIE_NAME] = "not-even-valid"
    assert x_cache(client.get("/echo/?k=s9")) == "BYPASS"


def test_S9_per_user_entries_are_keyed_by_user_and_private(client: Client) -> None:
    ada, bob = User.objects.create_user("ada"), User.objects.create_user("bob")
    client.force_login(ada)
    page = client.get("/me/?user=1")
    assert "private" in page.headers["Cache-Control"] and b"user=ada" in page.content
    other = Client()
    other.force_login(bob)
    assert b"user=bob" in other.get("/me/?user=1").content
    hit = client.get("/me/?user=1")
    assert x_cache(hit) == "HIT" and b"user=ada" in hit.content


@pytest.mark.parametrize("mode", ["read", "in"])
@pytest.mark.parametrize("ordered", [True, False], ids=["above-sessions", "below-sessions"])
def test_S10_a_page_that_accessed_the_session_varies_on_cookie(
    settings: Any, client: Client, mode: str, ordered: bool
) -> None:
    if not ordered:  # misordered (check W002): the Vary must still be there when storing
        mw = [m for m in settings.MIDDLEWARE if "cachekit" not in m]
        settings.MIDDLEWARE = [mw[0], "cachekit_django.middleware.CacheMiddleware", *mw[1:]]
    path = url("/echo/", session=mode)
    first = client.get(path)
    assert "cookie" in first.headers["Vary"].lower()
    hit = client.get(path)
    assert x_cache(hit) == "HIT" and "cookie" in hit.headers["Vary"].lower()


def test_S10_refreshing_the_session_on_every_request_sets_vary_and_stores_nothing(
    settings: Any, client: Client
) -> None:
    settings.SESSION_SAVE_EVERY_REQUEST = True
    client.get(url("/echo/", session="write"))  # a session exists: its cookie is refreshed
    response = client.get(url("/echo/", session="read"))
    assert "cookie" in response.headers["Vary"].lower() and x_cache(response) == "BYPASS"


def test_S11_streaming_responses_pass_through_unbuffered_and_unstored(client: Client) -> None:
    views.STREAMED.clear()
    response = client.get("/stream/")
    assert response.streaming and views.STREAMED == []  # nothing read before the client reads
    assert x_cache(response) == "MISS" and "ETag" not in response.headers
    assert b"".join(response.streaming_content) == b"abc"  # type: ignore[arg-type]
    again = client.get("/stream/")
    assert b"".join(again.streaming_content) == b"abc"  # type: ignore[arg-type]
    assert views.STREAMED == ["a", "b", "c"] * 2  # rendered twice: never stored


def test_S11_file_responses_pass_through(client: Client) -> None:
    first = client.get("/file/")
    assert first.streaming and x_cache(first) == "MISS"
    first.close()
    second = client.get("/file/")
    assert second.streaming
    second.close()


def test_S11_bodies_above_the_size_limit_are_not_stored(settings: Any, client: Client) -> None:
    use_cachekit(settings, http={"MAX_BODY_SIZE": 100})
    assert not stored(client, url("/echo/", pad=200))
    assert stored(client, url("/echo/", pad=10))


@pytest.mark.parametrize("value", ["foo, s-maxage=60", 'max-age="60"', 'x="a,b", max-age=60'])
def test_S12_unknown_directives_are_ignored_and_quotes_accepted(
    settings: Any, client: Client, value: str
) -> None:
    shared(settings)
    assert stored(client, url("/plain/", f"Cache-Control: {value}"))


@pytest.mark.parametrize(
    "value", ["max-age=3600a", "max-age=a3600", "max-age=-1", "max-age=3600.5", "max-age="]
)
@pytest.mark.parametrize("path", ["/echo/", "/plain/"])
def test_S13_malformed_freshness_is_uncacheable_never_a_500(
    settings: Any, client: Client, value: str, path: str
) -> None:
    shared(settings)
    response = client.get(url(path, f"Cache-Control: {value}"))
    assert response.status_code == 200
    assert not stored(client, url(path, f"Cache-Control: {value}"))


@pytest.mark.parametrize("value", ["s-maxage=99999999999999999999", "max-age=2147483648"])
def test_S14_huge_delta_seconds_clamp(settings: Any, client: Client, value: str) -> None:
    shared(settings)
    assert stored(client, url("/plain/", f"Cache-Control: {value}"))


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("max-age=60, no-cache", False),
        ("max-age=60, max-age=120", False),  # differing duplicates: stale
        ("max-age=60, max-age=60", True),
        ("s-maxage=60, must-revalidate", True),
    ],
)
def test_S15_conflicting_directives_most_restrictive_wins(
    settings: Any, client: Client, value: str, kept: bool
) -> None:
    shared(settings)
    assert stored(client, url("/plain/", f"Cache-Control: {value}")) is kept


def test_S16_s_maxage_beats_max_age_in_a_shared_cache(
    settings: Any, client: Client, clock: Clock
) -> None:
    shared(settings)
    long_shared = url("/plain/", "Cache-Control: max-age=1, s-maxage=60")
    short_shared = url("/plain/", "Cache-Control: max-age=60, s-maxage=1")
    client.get(long_shared), client.get(short_shared)
    clock.advance(5)
    assert x_cache(client.get(long_shared)) == "HIT"
    assert x_cache(client.get(short_shared)) == "MISS"


def test_S16_expires(settings: Any, client: Client) -> None:
    shared(settings)
    past, future = http_date(time.time() - 3600), http_date(time.time() + 3600)
    assert stored(client, url("/plain/", "Cache-Control: max-age=60", f"Expires: {past}"))
    assert stored(client, url("/plain/", f"Expires: {future}"))
    assert not stored(client, url("/plain/", "Expires: 0"))
    assert not stored(client, url("/plain/", "Expires: not a date"))
    assert not stored(client, url("/plain/", f"Expires: {past}"))
    assert not stored(client, url("/plain/"))  # no explicit freshness


def test_S17_hop_by_hop_fields_are_not_replayed(client: Client) -> None:
    path = url(
        "/echo/", "Keep-Alive: timeout=5", "Connection: X-Secret", "X-Secret: 1", "X-Kept: 1"
    )
    client.get(path)
    hit = client.get(path)
    assert x_cache(hit) == "HIT" and hit.headers["X-Kept"] == "1"
    for name in ("Keep-Alive", "Connection", "X-Secret"):
        assert name not in hit.headers
    assert not hit.cookies


# =========================================================================== keying


def test_K1_the_key_covers_scheme_host_path_and_the_sorted_query(client: Client) -> None:
    first = client.get("/echo/?a=1&b=2")
    assert x_cache(client.get("/echo/?b=2&a=1")) == "HIT"  # sorted by name
    assert x_cache(client.get("/echo/?a=1&a=2")) == "MISS"
    assert x_cache(client.get("/echo/?a=2&a=1")) == "MISS"  # repeated values keep their order
    assert x_cache(client.get("/echo/?a=1&b=2", secure=True)) == "MISS"
    assert x_cache(client.get("/echo/?a=1&b=2", HTTP_HOST="other.test")) == "MISS"
    assert x_cache(client.get("/echo/?a=1&b=2&c")) == "MISS"
    assert renders(client.get("/echo/?b=2&a=1")) == renders(first)


@pytest.mark.parametrize("use_forwarded_host", [False, True])
def test_K2_forwarded_headers_never_poison_the_plain_entry(
    settings: Any, client: Client, use_forwarded_host: bool
) -> None:
    settings.USE_X_FORWARDED_HOST = use_forwarded_host
    path = url("/echo/", host=1)
    poisoned = client.get(
        path,
        headers={
            "X-Forwarded-Host": "evil.test",
            "X-Forwarded-Proto": "https",
            "X-Original-URL": "/account/",
            "X-Rewrite-URL": "/account/",
        },
    )
    assert (b"host=evil.test" in poisoned.content) is use_forwarded_host  # as the view sees it
    plain = client.get(path)
    assert b"host=testserver" in plain.content and b"evil" not in plain.content
    assert x_cache(plain) == ("MISS" if use_forwarded_host else "HIT")


@pytest.mark.parametrize("sent", ["accept-language", "ACCEPT-LANGUAGE"])
def test_K3_vary_names_are_case_insensitive(client: Client, sent: str) -> None:
    path = url("/echo/", "Vary: ACCEPT-language", show="Accept-Language")
    fr = client.get(path, headers={sent: "fr"})
    assert renders(client.get(path, headers={"Accept-Language": "fr"})) == renders(fr)
    assert renders(client.get(path, headers={"Accept-Language": " fr "})) == renders(fr)
    assert b"=de" in client.get(path, headers={"Accept-Language": "de"}).content


def test_K4_an_absent_vary_header_and_an_empty_one_are_different_keys(client: Client) -> None:
    path = url("/echo/", "Vary: X-Token")
    absent = client.get(path)
    empty = client.get(path, headers={"X-Token": ""})
    assert x_cache(empty) == "MISS" and renders(empty) > renders(absent)
    assert renders(client.get(path)) == renders(absent)
    assert renders(client.get(path, headers={"X-Token": ""})) == renders(empty)


async def _asgi_get(path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [(b"host", b"testserver"), *headers],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
    }
    sent: list[dict[str, Any]] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client never disconnects; Django cancels this
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await ASGIHandler()(scope, receive, send)
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.django_db(transaction=True)
async def test_K5_underscored_forwarded_host_is_not_conflated(settings: Any) -> None:
    settings.USE_X_FORWARDED_HOST = True
    spoofed = await _asgi_get("/echo/", b"host=1&k=k5", [(b"x_forwarded_host", b"evil.test")])
    assert b"host=testserver" in spoofed  # Django drops underscored names; so does the key
    plain = await _asgi_get("/echo/", b"host=1&k=k5", [])
    assert plain == spoofed  # the same entry, and it is the honest one


@pytest.mark.parametrize(
    "path",
    [
        "/account/",
        "/account/x.css",
        "/account;x.css",
        "/account%2Fx.css",
        "/account/..%2Fstatic/x.css",
        "/account/x.js?v=1",
    ],
)
@pytest.mark.parametrize("mode", ["decorated", "shared"])
def test_K6_cache_deception_private_pages_are_never_stored(
    settings: Any, client: Client, path: str, mode: str
) -> None:
    if mode == "shared":
        shared(settings)
    assert not stored(client, path)


def test_K7_head_is_answered_from_a_stored_get_and_never_stores_an_empty_body(
    client: Client,
) -> None:
    path = "/echo/?k=k7"
    assert x_cache(client.head(path)) == "MISS"
    get = client.get(path)
    assert x_cache(get) == "MISS" and get.content.startswith(b"n=")
    head = client.head(path)
    assert x_cache(head) == "HIT" and head.content == b""
    assert head.headers["ETag"] == get.headers["ETag"]
    assert client.get(path).content == get.content


def test_K8_languages_and_encodings_get_their_own_entries(settings: Any, client: Client) -> None:
    use_cachekit(settings, middleware=[GZIP, *settings.MIDDLEWARE])  # gzip below cachekit
    lang = url("/echo/", "Vary: Accept-Language", show="Accept-Language")
    fr = client.get(lang, headers={"Accept-Language": "fr"})
    en = client.get(lang, headers={"Accept-Language": "en"})
    assert renders(en) > renders(fr)
    assert renders(client.get(lang, headers={"Accept-Language": "fr"})) == renders(fr)
    big = url("/echo/", pad=500)
    zipped = client.get(big, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert x_cache(client.get(big, headers={"Accept-Encoding": "gzip"})) == "HIT"
    identity = client.get(big)
    assert "Content-Encoding" not in identity.headers and identity.content.startswith(b"n=")


# =========================================================================== validators
# ``/static/`` is not decorated: cachekit handles it only in shared-cache mode (where it is
# not stored: no explicit freshness), so its "miss" cases run there (issue 10, item 4: other
# undecorated responses pass through untouched).


def _etag(client: Client, path: str) -> str:
    return str(client.get(path).headers["ETag"])


@pytest.mark.parametrize("cached", [False, True], ids=["miss", "hit"])
def test_C1_if_none_match_uses_weak_comparison(settings: Any, client: Client, cached: bool) -> None:
    shared(settings)
    path = "/echo/?k=c1" if cached else "/static/"
    etag = _etag(client, path)
    for sent in (etag, f"W/{etag}"):
        assert client.get(path, headers={"If-None-Match": sent}).status_code == 304
    weak = url("/static/", 'ETag: W/"app"')
    assert client.get(weak).headers["ETag"] == 'W/"app"'
    assert client.get(weak, headers={"If-None-Match": '"app"'}).status_code == 304


@pytest.mark.parametrize("method", ["get", "head"])
def test_C2_if_none_match_lists_whitespace_and_star(
    settings: Any, client: Client, method: str
) -> None:
    shared(settings)
    etag = _etag(client, "/static/")
    for sent in (f'"nope", {etag}', f"  {etag}  ", f'"a",W/"b" , {etag}', "*"):
        response = getattr(client, method)("/static/", headers={"If-None-Match": sent})
        assert response.status_code == 304, sent
    assert client.get("/static/", headers={"If-None-Match": '"nope"'}).status_code == 200


def test_C3_if_none_match_present_ignores_if_modified_since(settings: Any, client: Client) -> None:
    shared(settings)
    modified = http_date(time.time() - 3600)
    path = url("/static/", f"Last-Modified: {modified}")
    headers = {"If-None-Match": '"other"', "If-Modified-Since": http_date(time.time())}
    assert client.get(path, headers=headers).status_code == 200


def test_C4_if_modified_since(settings: Any, client: Client) -> None:
    shared(settings)
    modified = time.time() - 3600
    path = url("/static/", f"Last-Modified: {http_date(modified)}")
    ims = client.get(path, headers={"If-Modified-Since": http_date(time.time())})
    assert ims.status_code == 304
    older = client.get(path, headers={"If-Modified-Since": http_date(modified - 60)})
    assert older.status_code == 200
    for bad in ("yesterday", f"{http_date(time.time())}, {http_date(time.time())}"):
        assert client.get(path, headers={"If-Modified-Since": bad}).status_code == 200
    no_lm = client.get("/static/", headers={"If-Modified-Since": http_date(time.time())})
    assert no_lm.status_code == 200
    posted = client.post(path, headers={"If-Modified-Since": http_date(time.time())})
    assert posted.status_code == 200


@pytest.mark.parametrize("status", [302, 404, 500])
def test_C5_preconditions_only_on_2xx(client: Client, status: int) -> None:
    response = client.get(url("/echo/", status=status), headers={"If-None-Match": "*"})
    assert response.status_code == status


def test_C6_if_match_and_if_unmodified_since_are_left_to_the_app(client: Client) -> None:
    path = "/echo/?k=c6"
    first = client.get(path)
    etag = first.headers["ETag"]
    for headers in (
        {"If-Match": '"other"'},
        {"If-Unmodified-Since": http_date(0)},
        {"If-Match": etag, "If-None-Match": etag},  # never a 304 from the cache here
    ):
        response = client.get(path, headers=headers)
        assert response.status_code == 200 and x_cache(response) == "BYPASS"
        assert renders(response) > renders(first)  # the app saw the request
    assert x_cache(client.get(path)) == "HIT"  # and the stored page is untouched


@pytest.mark.parametrize("cached", [False, True], ids=["miss", "hit"])
def test_C7_a_304_carries_the_caching_headers_of_the_200(
    settings: Any, client: Client, cached: bool
) -> None:
    shared(settings)
    expires = http_date(time.time() + 60)
    path = url(
        "/echo/" if cached else "/static/",
        "Cache-Control: public, max-age=60" + ("" if cached else ", no-cache"),
        f"Expires: {expires}",
        "Vary: Accept-Language",
        "Content-Location: /here",
        k="c7",
    )
    full = client.get(path)
    not_modified = client.get(path, headers={"If-None-Match": full.headers["ETag"]})
    assert not_modified.status_code == 304
    for name in ("ETag", "Cache-Control", "Expires", "Vary", "Content-Location"):
        assert not_modified.headers[name] == full.headers[name], name
    if cached:
        assert x_cache(not_modified) == "HIT" and "Age" in not_modified.headers
        assert not_modified.headers["Date"] == client.get(path).headers["Date"]


@pytest.mark.parametrize("cached", [False, True], ids=["miss", "hit"])
def test_C8_a_304_has_no_content(settings: Any, client: Client, cached: bool) -> None:
    shared(settings)
    path = "/echo/?k=c8" if cached else "/static/"
    etag = _etag(client, path)
    response = client.get(path, headers={"If-None-Match": etag})
    assert response.status_code == 304 and response.content == b""
    assert response.headers.get("Content-Length", "0") == "0"
    assert "Content-Type" not in response.headers


def test_C9_a_304_from_the_app_is_never_stored(client: Client) -> None:
    assert not stored(client, url("/echo/", status=304))


def test_C10_the_etag_is_a_hash_of_the_bytes_sent(settings: Any, client: Client) -> None:
    Product.objects.create(name="a")
    before = client.get("/products/").headers["ETag"]
    Product.objects.create(name="b")
    assert client.get("/products/").headers["ETag"] != before
    # Compressed below cachekit: the core hashes the gzip bytes, so the codings differ.
    # (A Client loads MIDDLEWARE on its first request: a new one per middleware order.)
    use_cachekit(settings, middleware=[GZIP, *settings.MIDDLEWARE], http={"SHARED_CACHE": True})
    below = Client()
    identity = below.get("/static/", data={"pad": 500})
    zipped = below.get("/static/", data={"pad": 500}, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["ETag"] != identity.headers["ETag"]
    assert not zipped.headers["ETag"].startswith("W/")
    # Compressed above cachekit: Django's GZipMiddleware weakens the strong ETag.
    settings.MIDDLEWARE = [GZIP, *[m for m in settings.MIDDLEWARE if m != GZIP]]
    above = Client().get("/static/", data={"pad": 500}, headers={"Accept-Encoding": "gzip"})
    assert above.headers["Content-Encoding"] == "gzip"
    assert above.headers["ETag"] == "W/" + identity.headers["ETag"]


def test_C11_etags_are_valid_and_app_etags_are_kept(settings: Any, client: Client) -> None:
    shared(settings)
    generated = _etag(client, "/static/")
    assert generated.startswith('"') and generated.endswith('"') and len(generated) > 2
    path = url("/echo/", 'ETag: "app-tag"')
    assert client.get(path).headers["ETag"] == '"app-tag"'
    assert client.get(path).headers["ETag"] == '"app-tag"'  # the HIT too


# =========================================================================== serving


def test_R1_age_is_the_current_age_and_replaces_a_stored_age(client: Client, clock: Clock) -> None:
    path = url("/echo/", "Age: 500")
    assert client.get(path).headers.get("Age") in (None, "500")
    assert client.get(path).headers["Age"] == "0"
    clock.advance(7.9)
    assert client.get(path).headers["Age"] == "7"
    clock.advance(3)
    assert client.get(path).headers["Age"] == "10"


def test_R2_the_stored_date_is_served_unchanged(client: Client, clock: Clock) -> None:
    sent = url("/echo/", "Date: Tue, 01 Jan 2030 00:00:00 GMT")
    client.get(sent)
    clock.advance(5)
    assert client.get(sent).headers["Date"] == "Tue, 01 Jan 2030 00:00:00 GMT"
    client.get("/echo/?k=r2")
    first = client.get("/echo/?k=r2").headers["Date"]
    clock.advance(5)
    assert client.get("/echo/?k=r2").headers["Date"] == first


def _claim_rerender(path: str, query: str) -> None:
    """Another request is re-rendering the stale page right now (it holds the claim)."""
    lookup = get_http_cache().lookup(page_request(path, query))
    assert lookup.claim is not None


def test_R3_stale_within_the_declared_window_only(client: Client, clock: Clock) -> None:
    first = client.get("/stale/")
    clock.advance(11)  # past ttl=10, within stale_ttl=60
    _claim_rerender("/stale/", "")
    stale = client.get("/stale/")
    assert x_cache(stale) == "STALE" and renders(stale) == renders(first)
    clock.advance(100)  # past the window: re-rendered
    assert x_cache(client.get("/stale/")) == "MISS"


@pytest.mark.parametrize(
    ("value", "serves_stale"),
    [
        ("max-age=10, stale-while-revalidate=60", True),
        ("max-age=10, stale-while-revalidate=60, must-revalidate", False),
        ("max-age=10, stale-while-revalidate=60, proxy-revalidate", False),
        ("s-maxage=10, stale-while-revalidate=60", False),  # s-maxage implies proxy-revalidate
    ],
)
def test_R3_shared_mode_follows_stale_while_revalidate(
    settings: Any, client: Client, clock: Clock, value: str, serves_stale: bool
) -> None:
    shared(settings)
    path = url("/plain/", f"Cache-Control: {value}")
    client.get(path)
    clock.advance(11)
    query = path.partition("?")[2]
    http = get_http_cache()
    lookup = http.lookup(Request("GET", "http", "testserver", "/plain/", query, []))
    # Either way this request holds the key's claim: inside the window to re-render while the
    # others are served STALE; past it to render a miss the others wait for (coalescing).
    assert lookup.claim is not None and lookup.response is None
    assert lookup.leads is not serves_stale
    if not serves_stale:
        http.release(lookup)  # rendered nothing: the next request renders for itself
    assert (x_cache(client.get(path)) == "STALE") is serves_stale


def test_R4_an_unsafe_method_invalidates_the_url(client: Client) -> None:
    path = "/cbv/decorated/?k=r4"
    first = client.get(path)
    assert x_cache(client.get(path)) == "HIT"
    assert client.post(path).status_code == 200
    assert renders(client.get(path)) > renders(first)


def test_R4_an_error_response_invalidates_nothing(client: Client) -> None:
    path = "/echo/?k=r4e"
    client.get(path)
    assert client.post(path, headers={"X-Echo-Status": "500"}).status_code == 500
    assert x_cache(client.get(path)) == "HIT"


@pytest.mark.parametrize(
    "headers",
    [{"Cache-Control": "no-cache"}, {"Cache-Control": "max-age=0"}, {"Pragma": "no-cache"}],
)
def test_R5_request_no_cache_is_ignored_by_default(
    settings: Any, client: Client, headers: dict[str, str]
) -> None:
    client.get("/echo/?k=r5")
    assert x_cache(client.get("/echo/?k=r5", headers=headers)) == "HIT"
    use_cachekit(settings, http={"HONOUR_REQUEST_NO_CACHE": True})
    client.get("/echo/?k=r5")
    assert x_cache(client.get("/echo/?k=r5", headers=headers)) == "BYPASS"


def test_R5_only_if_cached_answers_504_on_a_miss(client: Client) -> None:
    headers = {"Cache-Control": "only-if-cached"}
    assert client.get("/echo/?k=r5o", headers=headers).status_code == 504
    client.get("/echo/?k=r5o")
    assert client.get("/echo/?k=r5o", headers=headers).status_code == 200


def test_R6_x_cache_values_and_a_configurable_name(settings: Any, client: Client) -> None:
    assert x_cache(client.get("/echo/?k=r6")) == "MISS"
    assert x_cache(client.get("/echo/?k=r6")) == "HIT"
    assert x_cache(client.post("/echo/?k=r6")) == "BYPASS"
    use_cachekit(settings, http={"HEADER_NAME": "X-Shop-Cache"})
    response = client.get("/echo/?k=r6")
    assert response.headers["X-Shop-Cache"] == "MISS" and "X-Cache" not in response.headers
    use_cachekit(settings, http={"HEADER_NAME": None})
    client.get("/echo/?k=r6")
    hit = client.get("/echo/?k=r6")
    assert not [h for h in hit.headers if "cache" in h.lower() and h.lower().startswith("x-")]


def test_R7_cdn_cache_control_only_when_configured(settings: Any, client: Client) -> None:
    assert "CDN-Cache-Control" not in client.get("/declared/").headers
    use_cachekit(settings, http={"CDN_CACHE_CONTROL": "max-age=600"})
    assert client.get("/declared/?k=1").headers["CDN-Cache-Control"] == "max-age=600"
    assert "CDN-Cache-Control" not in client.get("/account/").headers  # private: no CDN
    # The app's own CDN-Cache-Control is never read as Cache-Control for cachekit's storage.
    shared(settings)
    own = url("/plain/", "Cache-Control: s-maxage=60", "CDN-Cache-Control: no-store")
    assert stored(client, own)


def test_R8_tag_invalidation_rerenders_pages(client: Client) -> None:
    Product.objects.create(name="a")
    first = client.get("/products/")
    assert x_cache(client.get("/products/")) == "HIT"
    Product.objects.create(name="b")  # the model tag
    again = client.get("/products/")
    assert b"a:0,b:0" in again.content and renders(again) > renders(first)
    client.get("/echo/?k=r8")
    invalidate_tags("echo")  # an explicit tag
    assert x_cache(client.get("/echo/?k=r8")) == "MISS"


# =========================================================================== R11, S19


def test_R11_debug_headers_say_why_through_the_middleware(settings: Any, client: Client) -> None:
    use_cachekit(settings, http={"DEBUG_HEADERS": True})
    path = "/echo/?k=r11"
    first, second = client.get(path), client.get(path)
    assert (x_cache(first), first.headers.get("X-Cache-Reason")) == ("MISS", "cold")
    assert (x_cache(second), second.headers.get("X-Cache-Reason")) == ("HIT", "fresh")
    bypass = client.get(path, headers={"Authorization": "Bearer x"})
    assert (x_cache(bypass), bypass.headers.get("X-Cache-Reason")) == ("BYPASS", "authorization")
    cookie = client.get(url("/echo/", cookie="theme=new"))
    assert (x_cache(cookie), cookie.headers.get("X-Cache-Reason")) == ("MISS", "sets-cookie")
    private = client.get(url("/echo/", "Cache-Control: private"))
    assert private.headers.get("X-Cache-Reason") == "private"


def test_R11_no_reason_header_by_default(client: Client) -> None:
    for response in (client.get("/echo/?k=r11off"), client.get("/echo/?k=r11off")):
        assert "X-Cache-Reason" not in response.headers


def test_S19_surrogate_control_never_leaves_through_the_middleware(client: Client) -> None:
    path = url("/echo/", "Surrogate-Control: no-store", k="s19")
    first, second = client.get(path), client.get(path)
    assert renders(second) > renders(first)  # not stored, whatever Cache-Control says
    assert "Surrogate-Control" not in first.headers and "Surrogate-Control" not in second.headers
