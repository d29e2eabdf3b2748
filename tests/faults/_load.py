"""Bounded HTTP load on the example shops, and a poller of their ``/cachekit/stats.json``.

``Load({"django": url, "fastapi": url})`` runs, per shop, ``visitors`` anonymous visitors and
one shopper with a cart in the session, each at a fixed rate, plus a stats poller. Everything
runs on one asyncio loop in a daemon thread (httpx ``AsyncClient``, one per simulated user, so
each keeps its own keep-alive connection). Every request is recorded as a ``Sample``: when it
was sent (``time.monotonic()``), how long it took at the client, its status or the transport
error. The poller records ``Stat`` snapshots every ``SLOW_POLL`` seconds, or more often while
``watch()`` asks for precision (around a fault or a recovery).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Self

import httpx

CLIENT_TIMEOUT = 5.0  # a response slower than this is recorded as an error
FAST_POLL = 0.015
SLOW_POLL = 0.25
HOT_PRODUCTS = 40  # detail pages visited (of the 200 seeded): each about every 2 s
LIST_PAGES = 9  # the 200 products make 9 list pages
CART_PRODUCT = 7  # what the shoppers put in their carts
EMPTY_CART = "Your cart is empty"


@dataclass(frozen=True, slots=True)
class Sample:
    shop: str
    who: str  # "visitor" or "shopper"
    method: str
    path: str
    start: float  # time.monotonic() when the request was sent
    latency: float  # seconds, at the client
    status: int  # 0: no response (connection error or client timeout)
    error: str = ""
    cart: bool | None = None  # a shopper's /cart/: did it show the items?

    @property
    def end(self) -> float:
        return self.start + self.latency


@dataclass(frozen=True, slots=True)
class Stat:
    """One answer of ``/cachekit/stats.json``: the engine state between ``sent`` and
    ``received`` (both ``time.monotonic()``)."""

    sent: float
    received: float
    circuit: str
    opened: int  # how many times the breaker opened so far
    opened_at: float  # wall-clock time (time.time()) it last opened, 0.0 if never
    hits: int  # the redis layer's
    misses: int
    errors: int
    skipped: int


class Load:
    def __init__(
        self,
        shops: dict[str, str],
        *,
        visitors: int = 3,
        visitor_rate: float = 10.0,
        shopper_rate: float = 4.0,
        seed: int = 1,
    ) -> None:
        self.shops = shops
        self.visitors = visitors
        self.visitor_rate = visitor_rate
        self.shopper_rate = shopper_rate
        self.samples: list[Sample] = []
        self.stats: dict[str, list[Stat]] = {shop: [] for shop in shops}
        self.poll_errors: dict[str, list[str]] = {shop: [] for shop in shops}
        # The shoppers' session cookies: after filling the cart, and when the load stopped.
        self.sessions: dict[str, list[str | None]] = {shop: [] for shop in shops}
        self._fast_until = 0.0
        self._fast_interval = FAST_POLL
        self._random = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)

    # -- control, from the test's thread ---------------------------------------------------------
    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(30):
            self.stop()
            raise RuntimeError("the load did not start within 30 s")
        if self._failure is not None:
            self.stop()
            raise RuntimeError("the load could not start") from self._failure
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            if self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(CLIENT_TIMEOUT + 10)
            if self._thread.is_alive():
                raise RuntimeError("the load did not stop")
        if self._failure is not None:
            raise RuntimeError("the load generator failed") from self._failure

    def watch(self, seconds: float, interval: float = FAST_POLL) -> None:
        """Poll the stats every ``interval`` seconds for the next ``seconds``."""
        self._fast_until = time.monotonic() + seconds
        self._fast_interval = interval

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- results -------------------------------------------------------------------------------
    def during(self, shop: str, start: float, end: float) -> list[Sample]:
        """The requests of ``shop`` in flight at any moment of [start, end]."""
        return [
            s for s in list(self.samples) if s.shop == shop and s.start <= end and s.end >= start
        ]

    def first_stat(self, shop: str, after: float, test: Callable[[Stat], bool]) -> Stat | None:
        """The first snapshot *sent* at or after ``after`` that passes ``test``."""
        for stat in list(self.stats[shop]):
            if stat.sent >= after and test(stat):
                return stat
        return None

    def last_stat_before(self, shop: str, moment: float) -> Stat | None:
        found = None
        for stat in list(self.stats[shop]):
            if stat.received <= moment:
                found = stat
        return found

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        clients: list[httpx.AsyncClient] = []

        def client(base: str) -> httpx.AsyncClient:
            made = httpx.AsyncClient(base_url=base, timeout=CLIENT_TIMEOUT)
            clients.append(made)
            return made

        try:
            jobs: list[Coroutine[Any, Any, None]] = []
            shoppers: dict[str, httpx.AsyncClient] = {}
            try:
                for shop, base in self.shops.items():
                    shopper = shoppers[shop] = client(base)
                    await self._fill_cart(shop, shopper)  # before any fault: a real session
                    self.sessions[shop].append(_session_cookie(shopper))
                    jobs.append(self._shopper(shop, shopper))
                    jobs.extend(self._visitor(shop, client(base)) for _ in range(self.visitors))
                    jobs.append(self._poller(shop, client(base)))
                self.samples.clear()  # only the load itself is measured
            except BaseException as exc:
                self._failure = exc
                for job in jobs:
                    job.close()
                return
            finally:
                self._ready.set()
            tasks = [asyncio.ensure_future(job) for job in jobs]
            try:
                await asyncio.gather(*tasks)
            except BaseException as exc:  # a bug in the load itself: stop, and tell stop()
                self._failure = exc
                self._stop.set()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                return
            for shop, shopper in shoppers.items():
                self.sessions[shop].append(_session_cookie(shopper))
        finally:
            for made in clients:
                await made.aclose()

    async def _paced(self, rate: float, step: Callable[[int], Coroutine[Any, Any, None]]) -> None:
        """Call ``step(i)`` ``rate`` times a second (no catching up after a slow one)."""
        assert self._stop is not None
        period = 1.0 / rate
        loop = asyncio.get_running_loop()
        due = loop.time() + self._random.uniform(0, period)  # spread the users' phases
        i = 0
        while not self._stop.is_set():
            if await self._sleep(due - loop.time()):
                return
            await step(i)
            i += 1
            due = max(due + period, loop.time())

    async def _request(
        self,
        shop: str,
        who: str,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        **kwargs: Any,
    ) -> httpx.Response | None:
        start = time.monotonic()
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            latency = time.monotonic() - start
            self.samples.append(
                Sample(shop, who, method, path, start, latency, 0, f"{type(exc).__name__}: {exc}")
            )
            return None
        latency = time.monotonic() - start
        cart = None
        if who == "shopper" and path == "/cart/" and response.status_code == 200:
            cart = EMPTY_CART not in response.text
        self.samples.append(
            Sample(shop, who, method, path, start, latency, response.status_code, cart=cart)
        )
        return response

    def _visitor(self, shop: str, client: httpx.AsyncClient) -> Coroutine[Any, Any, None]:
        rng = random.Random(self._random.random())

        async def step(i: int) -> None:
            dice = rng.random()
            if dice < 0.25:
                path = "/"  # the home page: hot, so it is read from Redis once L1's copy lapses
            elif dice < 0.8:
                path = f"/products/{rng.randint(1, HOT_PRODUCTS)}/"
            else:
                path = f"/?page={rng.randint(2, LIST_PAGES)}"
            await self._request(shop, "visitor", client, "GET", path)

        return self._paced(self.visitor_rate, step)

    async def _add_to_cart(self, shop: str, client: httpx.AsyncClient) -> httpx.Response | None:
        path = f"/cart/add/{CART_PRODUCT}/"
        headers = {}
        token = client.cookies.get("csrftoken")  # Django's CSRF cookie (the FastAPI shop has none)
        if token:
            headers["X-CSRFToken"] = token
        return await self._request(
            shop, "shopper", client, "POST", path, data={"quantity": "1"}, headers=headers
        )

    async def _fill_cart(self, shop: str, client: httpx.AsyncClient) -> None:
        if shop == "django":  # the form page sets the CSRF cookie
            await client.get(f"/cart/add/{CART_PRODUCT}/")
        response = await self._add_to_cart(shop, client)
        if response is None or response.status_code not in (302, 303):
            raise RuntimeError(f"{shop}: could not fill a cart: {response}")
        page = await client.get("/cart/")
        if EMPTY_CART in page.text:
            raise RuntimeError(f"{shop}: the cart is empty after adding to it")

    def _shopper(self, shop: str, client: httpx.AsyncClient) -> Coroutine[Any, Any, None]:
        """Looks at the cart, browses (pages BYPASS the cache with a session cookie) and adds
        to the cart now and then."""
        rng = random.Random(self._random.random())

        async def step(i: int) -> None:
            if i % 3 == 0:
                await self._request(shop, "shopper", client, "GET", "/cart/")
            elif i % 12 == 1:
                await self._add_to_cart(shop, client)
            elif i % 2:
                await self._request(shop, "shopper", client, "GET", f"/?page={rng.randint(1, 3)}")
            else:
                path = f"/products/{rng.randint(1, HOT_PRODUCTS)}/"
                await self._request(shop, "shopper", client, "GET", path)

        return self._paced(self.shopper_rate, step)

    async def _poller(self, shop: str, client: httpx.AsyncClient) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                response = await client.get("/cachekit/stats.json")
                stats = response.json()["stats"]
                redis = stats["layers"]["redis"]
                received = time.monotonic()
                self.stats[shop].append(
                    Stat(
                        sent,
                        received,
                        str(stats["circuit"]),
                        int(redis["circuit_opened"]),
                        float(redis["circuit_opened_at"]),
                        int(redis["hits"]),
                        int(redis["misses"]),
                        int(redis["errors"]),
                        int(redis["skipped"]),
                    )
                )
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                self.poll_errors[shop].append(f"{type(exc).__name__}: {exc}")
            fast = time.monotonic() < self._fast_until
            interval = self._fast_interval if fast else SLOW_POLL
            await self._sleep(sent + interval - time.monotonic())

    async def _sleep(self, delay: float) -> bool:
        """Sleep ``delay`` seconds or until stopped; True if stopped."""
        assert self._stop is not None
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        return self._stop.is_set()


def _session_cookie(client: httpx.AsyncClient) -> str | None:
    return client.cookies.get("sessionid") or client.cookies.get("session")  # Django, FastAPI


def statuses(samples: Iterable[Sample]) -> dict[str, int]:
    """Counts: requests, 2xx/3xx, 4xx, 5xx, transport errors."""
    counts = {"requests": 0, "ok": 0, "4xx": 0, "5xx": 0, "errors": 0}
    for sample in samples:
        counts["requests"] += 1
        if sample.status == 0:
            counts["errors"] += 1
        elif sample.status >= 500:
            counts["5xx"] += 1
        elif sample.status >= 400:
            counts["4xx"] += 1
        else:
            counts["ok"] += 1
    return counts


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in [0, 1]) of a non-empty list."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
