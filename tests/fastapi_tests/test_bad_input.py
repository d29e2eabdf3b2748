"""Malformed, huge and non-UTF-8 input never makes the cache fail a request.

Request headers the cache reads (Cache-Control, Pragma, If-None-Match, If-Modified-Since,
Cookie, Authorization, Host, Vary-nominated ones) and response headers it parses
(Cache-Control, Vary, ETag, Expires, Date, Last-Modified, Age, Connection) are fed junk,
64 kB values and raw bytes straight through the ASGI scope: the answer is always the page
(or a 304 / 504 the request asked for), never a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from cachekit_core import Cache
from cachekit_fastapi import CacheKit, CacheMiddleware

from ._asgi import Clock, call_asgi, client, make_cache

HUGE = 64 * 1024
BODY = "the page"
REQUEST_JUNK: dict[str, list[str]] = {
    "cache-control": [
        "",
        ",,, ,",
        "max-age=",
        'no-cache="',
        "max-age=60, max-age=61",
        "only-if-cached=\\",
        "\x01\x7f",
        "max-age=0" * (HUGE // 9),
        ", ".join(["max-age=1"] * (HUGE // 11)),
        '"' * HUGE,
    ],
    "pragma": ["no-cache" * (HUGE // 8), ",", '"'],
    "if-none-match": [
        '"',
        "W/",
        '*, "x',
        '"a" "b"',
        'W/W/"x"',
        '"' * HUGE,
        "*" * HUGE,
        ", " * HUGE,
    ],
    "if-modified-since": [
        "yesterday",
        "Tue, 99 Nov 1994 12:45:26 GMT",
        "Tue, 15 Nov 99999 12:45:26 GMT",
        "Sat, 29 Feb 2025 00:00:00 GMT",
        "0",
        "-1",
        "a" * HUGE,
    ],
    "vary": ["*", "Cookie, *", "a, " * (HUGE // 3)],  # meaningless on a request: ignored
    "accept-language": ["\t", "x" * HUGE],
    "cookie": ["session", "=; ;=;", "session=" * (HUGE // 8), "a=" + '"' * HUGE],
    "authorization": [" ", "\t", "Bearer " + "x" * HUGE],
}
RESPONSE_JUNK: dict[str, list[str]] = {
    "Cache-Control": [
        "max-age=3600a",
        'max-age="60',
        "s-maxage=-1, max-age=99999999999999999999999",
        "public, " * (HUGE // 8),
        "\\" * HUGE,
    ],
    "Vary": ["", ", , ,", "Accept-Language, " * (HUGE // 17), "\x00", "*" * HUGE],
    "ETag": ["", '"', "W/", "unquoted", '"' * HUGE],
    "Expires": ["0", "-1", "Tue, 99 Nov 1994 12:45:26 GMT", "x" * HUGE],
    "Date": ["yesterday", "x" * HUGE],
    "Last-Modified": ["", "Tue, 15 Nov 99999 12:45:26 GMT"],
    "Age": ["-5", "99999999999999999999999", "1.5"],
    "Connection": [", ,", "x-" * (HUGE // 2)],
}


def request_cases() -> list[tuple[str, str]]:
    return [(name, value) for name, values in REQUEST_JUNK.items() for value in values]


def response_cases() -> list[tuple[str, str]]:
    return [(name, value) for name, values in RESPONSE_JUNK.items() for value in values]


def case_id(case: tuple[str, str]) -> str:
    name, value = case
    return f"{name}={value[:12]!r}+{len(value)}"


def build(cache: Cache, **options: Any) -> tuple[FastAPI, list[tuple[str, str]]]:
    """An app whose decorated and undecorated views send ``extra`` response headers."""
    app = FastAPI()
    kit = CacheKit(app, cache, **options)
    extra: list[tuple[str, str]] = []

    def page(request: Request) -> Response:
        response = PlainTextResponse(BODY, headers={"Vary": "Accept-Language"})
        for name, value in extra:
            response.headers.append(name, value)
        return response

    app.get("/r")(kit.cache(ttl=60, cache_control="public, max-age=60")(page))
    app.get("/u")(page)
    return app, extra


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    built = make_cache(request.param, url, Clock())
    yield built
    await built.aclose()


def check(response: httpx.Response, name: str, value: str) -> None:
    allowed = {200, 304}
    if "only-if-cached" in value.lower():
        allowed.add(504)
    assert response.status_code in allowed, (name, value[:40])
    if response.status_code == 200:
        assert response.text == BODY


@pytest.mark.parametrize("case", request_cases(), ids=case_id)
async def test_junk_request_headers_get_the_page(cache: Cache, case: tuple[str, str]) -> None:
    name, value = case
    app, _ = build(cache, shared_cache=True)
    async with client(app) as c:
        for path in ("/r", "/r", "/u"):  # a miss, a hit, the shared-cache path
            check(await c.get(path, headers={name: value}), name, value)
        assert (await c.get("/r")).text == BODY


@pytest.mark.parametrize("case", response_cases(), ids=case_id)
async def test_junk_response_headers_still_send_the_page(
    cache: Cache, case: tuple[str, str]
) -> None:
    name, value = case
    app, extra = build(cache, shared_cache=True)
    extra.append((name, value))
    async with client(app) as c:
        for path in ("/r", "/r", "/u", "/u"):
            response = await c.get(path)
            assert (response.status_code, response.text) == (200, BODY)
            # Conditional requests against a junk validator: a page or a 304, nothing else.
            etag = response.headers.get("etag", '"none"')
            check(await c.get(path, headers={"If-None-Match": etag}), name, value)


@pytest.mark.parametrize(
    "query",
    [b"&&=&a=%ZZ&a=1", b"", b"a=1;b=2", b"%00=%00", b"=&=&", b"a=" + b"x" * HUGE, b"&" * HUGE],
    ids=lambda q: f"{q[:14]!r}+{len(q)}",
)
async def test_odd_query_strings_are_keyed_and_served(cache: Cache, query: bytes) -> None:
    app, _ = build(cache)
    first = await call_asgi(app, path="/r", query=query)
    second = await call_asgi(app, path="/r", query=query)
    assert (first.status, first.body) == (200, BODY.encode())
    assert (second.body, second.header("x-cache")) == (BODY.encode(), "HIT")


async def test_the_query_string_from_the_brief_through_http(cache: Cache) -> None:
    app, _ = build(cache)
    async with client(app) as c:
        first = await c.get("/r?&&=&a=%ZZ&a=1")
        second = await c.get("/r?&&=&a=%ZZ&a=1")
        reordered = await c.get("/r?a=%ZZ&a=1&=")  # empty segments dropped, order kept
    assert (first.status_code, first.text) == (200, BODY)
    assert (second.headers["x-cache"], reordered.headers["x-cache"]) == ("HIT", "HIT")


RAW_NAMES = [
    b"cookie",
    b"authorization",
    b"if-none-match",
    b"if-modified-since",
    b"cache-control",
    b"pragma",
    b"host",
    b"accept-language",
    b"x-forwarded-host",
    b"x_forwarded_host",
]


@pytest.mark.parametrize("name", RAW_NAMES)
@pytest.mark.parametrize("value", [b"\xff\xfe\x80", b"\xc3\x28 \xa0", b"session=\xff"])
async def test_non_utf8_header_bytes_in_the_scope(cache: Cache, name: bytes, value: bytes) -> None:
    app, _ = build(cache)
    headers = [(b"host", b"testserver"), (name, value)] if name != b"host" else [(name, value)]
    for _ in range(2):
        sent = await call_asgi(app, path="/r", headers=headers)
        assert (sent.status, sent.body) == (200, BODY.encode())


async def test_non_utf8_path_and_query_bytes_on_a_raw_asgi_app(cache: Cache) -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"cache-control", b"max-age=60")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"raw"})

    app = CacheMiddleware(raw, cache=cache, shared_cache=True)
    kwargs: dict[str, Any] = {"path": "/r\udcff", "raw_path": b"/r\xff", "query": b"a=\xff&&b"}
    states = [(await call_asgi(app, **kwargs)).header("x-cache") for _ in range(2)]
    assert states == ["MISS", "HIT"]
    other = await call_asgi(app, path="/r", raw_path=b"/r\xfe", query=b"a=\xff&&b")
    assert other.header("x-cache") == "MISS"  # another byte, another entry


async def hostile_round_trip(name: bytes, value: bytes, response_value: str) -> list[int]:
    cache = Cache()
    try:
        app, extra = build(cache, shared_cache=True)
        extra.append(("Cache-Control", response_value))
        extra.append(("Vary", response_value))
        statuses = []
        for path in ("/r", "/r", "/u"):
            sent = await call_asgi(
                app, path=path, headers=[(b"host", b"testserver"), (name, value)]
            )
            statuses.append(sent.status)
            if sent.status == 200:
                assert sent.body == BODY.encode()
        return statuses
    finally:
        await cache.aclose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(RAW_NAMES),
    value=st.binary(max_size=200),
    response_value=st.text(
        st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=80
    ),
)
def test_arbitrary_bytes_never_give_a_500(name: bytes, value: bytes, response_value: str) -> None:
    statuses = asyncio.run(hostile_round_trip(name, value, response_value))
    allowed = {200, 304} | ({504} if b"only-if-cached" in value.lower() else set())
    assert set(statuses) <= allowed
