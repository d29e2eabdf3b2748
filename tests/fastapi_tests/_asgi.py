"""Helpers shared by the HTTP cache adapter tests: caches, clients and a raw ASGI driver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.types import ASGIApp, Message

from cachekit_core import Cache


class Clock:
    """Wall time plus an offset the test moves forward (no sleeping to expire entries)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def make_cache(kind: str, redis_url: str | None, clock: Clock, namespace: str = "asgi") -> Cache:
    if kind == "memory":
        return Cache(namespace=namespace, clock=clock)
    assert redis_url is not None
    return Cache.from_url(redis_url, namespace=namespace, clock=clock, secret_key="test-secret")


def client(app: ASGIApp, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@dataclass
class Sent:
    """What an ASGI app sent for one request, byte for byte."""

    messages: list[Message] = field(default_factory=list)

    @property
    def start(self) -> Message:
        return next(m for m in self.messages if m["type"] == "http.response.start")

    @property
    def status(self) -> int:
        status: int = self.start["status"]
        return status

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(bytes(k), bytes(v)) for k, v in self.start["headers"]]

    def header(self, name: str) -> str | None:
        want = name.lower().encode()
        return next((v.decode("latin-1") for k, v in self.headers if k == want), None)

    @property
    def body_messages(self) -> list[Message]:
        return [m for m in self.messages if m["type"] == "http.response.body"]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.body_messages)


async def call_asgi(
    app: ASGIApp,
    *,
    method: str = "GET",
    path: str = "/",
    query: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = ((b"host", b"testserver"),),
    raw_path: bytes | None = None,
    scheme: str = "http",
) -> Sent:
    """Drive ``app`` with a hand-built scope: header bytes reach it exactly as given."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode("utf-8") if raw_path is None else raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(k, v) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "extensions": {},
    }
    sent = Sent()
    requested = False
    disconnect = asyncio.Event()

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()  # the client never goes away mid-test
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.messages.append(message)

    await app(scope, receive, send)
    return sent
