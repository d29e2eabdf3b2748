"""The fault suite: both example shops run as real servers on loopback, under a bounded load
(``_load.Load``: per shop 3 anonymous visitors at 10 req/s and a shopper with a cart at 4 req/s,
about 70 req/s in all), while their Redis is killed, frozen, or slowed down by a proxy.

The shops run with ``SHOP_L1_TTL=0.25``: L1 trusts a copy of a Redis entry for a quarter of a
second, so most requests (a quarter to the home page, the rest spread over 40 product pages and
8 more list pages) reach Redis, and the home page is read from Redis several times a second.
Redis calls are bounded by ``socket_timeout`` = 0.25 s (RedisLayer's default; the shops keep
it), and the breaker opens after 3 failures or one timeout, for a 1 s cooldown.

What is measured, and how (times are ``time.monotonic()`` in this process, but for the breaker's
own wall-clock ``circuit_opened_at``):

- kill: ``RedisServer.stop()`` (SIGKILL) 10 s into a 30 s run, ``start()`` 10 s later. Every
  response of the run is counted: no 5xx and no connection error or timeout at the client.
  "Breaker open" is the time from just before the kill to the engine's own record of the
  moment it opened (``circuit_opened_at`` in ``/cachekit/stats.json``, wall clock), read from
  the first poll after the kill that shows the breaker open.
  "First L2 hit" is the time from just before ``start()`` to the answer of the first poll
  showing the redis layer's ``hits`` counter above its value before the restart.
- freeze: SIGSTOP for 10 s. Every request in flight at any moment of the freeze is timed at
  the client: none may take more than ``socket_timeout`` + 50 ms.
- slow network: the shops reach Redis through ``LatencyProxy``; after 3 healthy seconds
  it delays every chunk by 200 ms in each direction (a round trip costs 400 ms, above the
  socket timeout) for 8 s, then is healthy again. The breaker must open, the failures must be
  timeouts (the stats have no timeout counter: the cachekit warning in the server's log names
  the exception), and requests must still succeed within ``socket_timeout`` + 50 ms.

A shopper's cart must survive a freeze and a slow network (a transient outage never logs
anyone out); a killed Redis restarts empty, so there it is only reported. Figures go to the
table printed at the end of the run (``conftest.py``); thresholds are asserted after every
figure of a scenario is recorded, so a failing run still prints all of them.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.examples._servers import django_shop, fastapi_shop
from tests.support.latency_proxy import LatencyProxy
from tests.support.redis_server import REDIS_SERVER, RedisServer

from ._load import Load, Sample, Stat, percentile, statuses
from ._report import SHOPS, Scenario

pytestmark = pytest.mark.slow

SOCKET_TIMEOUT = 0.25  # RedisLayer's default, which both shops use
OPEN_WITHIN = 0.25  # breaker open after a kill
L2_WITHIN = 2.0  # first Redis hit after a restart
SLOWEST = SOCKET_TIMEOUT + 0.05  # any request while Redis is frozen or slow
PROXY_DELAY = 0.2  # each way
L1_TTL = 0.25
WATCH = 0.05  # stats polling around the freeze and the slowdown, where no figure needs 15 ms
SHOP_ENV = {"SHOP_L1_TTL": str(L1_TTL)}


@dataclass(frozen=True, slots=True)
class Shops:
    urls: dict[str, str]
    logs: dict[str, Path]


@contextmanager
def running_shops(tmp: Path, redis_url: str) -> Iterator[Shops]:
    """Both shops on ``redis_url``, each with its own SQLite file and log."""
    dirs = {shop: tmp / shop for shop in SHOPS}
    for path in dirs.values():
        path.mkdir()
    with ExitStack() as stack:
        urls = {
            "django": stack.enter_context(
                django_shop(dirs["django"], redis_url, extra_env=SHOP_ENV)
            ),
            "fastapi": stack.enter_context(
                fastapi_shop(dirs["fastapi"], redis_url, extra_env=SHOP_ENV)
            ),
        }
        logs = {shop: dirs[shop] / f"{shop}.log" for shop in SHOPS}
        yield Shops(urls, logs)


@pytest.fixture(scope="module")
def fault_redis() -> Iterator[RedisServer]:
    """The Redis of the kill and freeze scenarios (one for both shops, as in production)."""
    if REDIS_SERVER is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: under CI this fails instead of skipping")
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def shops(fault_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shops]:
    with running_shops(tmp_path_factory.mktemp("faults"), fault_redis.url) as running:
        yield running


# -- helpers -------------------------------------------------------------------------------------


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def wait_closed(shops: Shops, within: float = 10.0) -> None:
    """Wait until every shop's breaker is closed (a previous scenario may have left it open)."""
    deadline = time.monotonic() + within
    with httpx.Client(timeout=5) as client:
        for shop, url in shops.urls.items():
            while True:
                stats = client.get(f"{url}/cachekit/stats.json").json()["stats"]
                if stats["circuit"] == "closed":
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{shop}: circuit still {stats['circuit']}")
                time.sleep(0.3)  # past L1's trust window: the next page is read from Redis,
                client.get(f"{url}/")  # which lets the breaker probe and close


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def since(stat: Stat | None, moment: float) -> float | None:
    """Seconds from ``moment`` to the answer of ``stat`` (None: never seen)."""
    return None if stat is None else stat.received - moment


def breaker_opened(load: Load, shop: str, moment: float) -> Stat | None:
    """The first poll sent after ``moment`` showing the breaker open (or having opened)."""
    before = load.last_stat_before(shop, moment)
    opened = before.opened if before is not None else 0
    return load.first_stat(shop, moment, lambda s: s.circuit != "closed" or s.opened > opened)


def breaker_open_delay(load: Load, shop: str, moment: float, wall: float) -> float | None:
    """Seconds from ``moment`` (``wall`` on the wall clock) until the breaker opened: exact,
    from the engine's own ``circuit_opened_at``; None if it never opened."""
    stat = breaker_opened(load, shop, moment)
    if stat is None or stat.opened_at < wall:
        return None
    return stat.opened_at - wall


def first_l2_hit(load: Load, shop: str, moment: float) -> Stat | None:
    """The first poll sent after ``moment`` showing more Redis hits than before it."""
    before = load.last_stat_before(shop, moment)
    hits = before.hits if before is not None else 0
    return load.first_stat(shop, moment, lambda s: s.hits > hits)


def record_counts(scenario: Scenario, load: Load, what: str = "whole run") -> None:
    counts = {shop: statuses(s for s in load.samples if s.shop == shop) for shop in SHOPS}
    scenario.info(f"requests ({what})", {s: c["requests"] for s, c in counts.items()})
    scenario.check("5xx responses", {s: c["5xx"] for s, c in counts.items()}, "0", _zero)
    scenario.check(
        "client errors/timeouts", {s: c["errors"] for s, c in counts.items()}, "0", _zero
    )
    scenario.info("4xx responses", {s: c["4xx"] for s, c in counts.items()})
    scenario.info(
        "stats.json polls (failed)",
        {s: f"{len(load.stats[s])} ({len(load.poll_errors[s])})" for s in SHOPS},
    )
    failed = {
        shop: [s for s in load.samples if s.shop == shop and (s.status == 0 or s.status >= 500)]
        for shop in SHOPS
    }
    if any(failed.values()):
        scenario.info("first failed requests", {s: _describe(v[:3]) for s, v in failed.items()})


def record_latency(
    scenario: Scenario, load: Load, fault: float, end: float, what: str, *, check: bool = True
) -> None:
    """Latency at the client of the requests in flight at any moment of [fault, end], and, to
    show what the machine adds on its own, of those that ended before the fault. With
    ``check``, none may take longer than SLOWEST."""
    before = {
        shop: [s.latency for s in load.samples if s.shop == shop and s.end < fault]
        for shop in SHOPS
    }
    samples = {shop: load.during(shop, fault, end) for shop in SHOPS}
    latencies = {shop: [s.latency for s in samples[shop]] for shop in SHOPS}
    scenario.info(
        "latency before the fault: p99 / max",
        {
            shop: f"{percentile(v, 0.99) * 1000:.0f} / {max(v) * 1000:.0f} ms" if v else "-"
            for shop, v in before.items()
        },
    )
    scenario.info(f"requests {what}", {shop: len(values) for shop, values in latencies.items()})
    for label, fraction in (("median", 0.5), ("p99", 0.99)):
        scenario.info(
            f"latency {what}: {label}",
            {shop: ms(percentile(v, fraction)) if v else None for shop, v in latencies.items()},
            " ms",
        )
    worst = {shop: ms(max(v)) if v else None for shop, v in latencies.items()}
    if not check:
        scenario.info(f"latency {what}: max", worst, " ms")
        return
    bound = SLOWEST * 1000
    scenario.check(f"latency {what}: max", worst, f"<= {bound:.0f} ms", lambda v: v <= bound, " ms")
    slow = {shop: [s for s in samples[shop] if s.latency > SLOWEST] for shop in SHOPS}
    if any(slow.values()):
        scenario.info(
            "slower than the limit (sent at fault +)",
            {shop: _describe(v[:3], fault) for shop, v in slow.items()},
        )


def record_cart(scenario: Scenario, load: Load, fault: float, end: float, *, kept: bool) -> None:
    """How shoppers saw their cart during the fault, and whether they still have their session
    (the same cookie, and the cart shows its items) when the load ends."""
    views = {
        shop: [s for s in load.samples if s.shop == shop and s.cart is not None] for shop in SHOPS
    }
    during = {
        shop: [bool(s.cart) for s in v if fault <= s.start <= end] for shop, v in views.items()
    }
    scenario.info(
        "cart shown during the fault", {s: f"{sum(v)}/{len(v)}" for s, v in during.items()}
    )
    same = {shop: len(set(load.sessions[shop])) == 1 for shop in SHOPS}
    last = {shop: bool(v and v[-1].cart) for shop, v in views.items()}
    session = {shop: same[shop] and last[shop] for shop in SHOPS}
    if kept:
        scenario.check("session and cart kept", session, "yes", bool)
    else:
        scenario.info("session and cart kept (Redis restarted empty)", session)


def _zero(value: float) -> bool:
    return value == 0


def _describe(samples: list[Sample], since: float | None = None) -> str:
    def when(sample: Sample) -> str:
        return "" if since is None else f" at {(sample.start - since) * 1000:+.0f} ms"

    return "; ".join(
        f"{s.method} {s.path}{when(s)}: {s.status or s.error} in {s.latency * 1000:.0f} ms"
        for s in samples
    )


def _assert_ok(scenario: Scenario) -> None:
    failures = scenario.failures()
    assert not failures, f"{scenario.name}: " + " | ".join(failures)


# -- the scenarios ---------------------------------------------------------------------------------


def test_redis_killed_for_10_of_30_seconds(fault_redis: RedisServer, shops: Shops) -> None:
    wait_closed(shops)
    scenario = Scenario("(a) kill")
    with Load(shops.urls) as load:
        start = time.monotonic()
        sleep_until(start + 9.9)
        load.watch(1.5)
        sleep_until(start + 10)
        killed, killed_wall = time.monotonic(), time.time()
        fault_redis.stop()  # SIGKILL
        sleep_until(start + 19.9)
        load.watch(3.5)
        sleep_until(start + 20)
        restarted = time.monotonic()
        fault_redis.start()
        sleep_until(start + 30)
    record_counts(scenario, load)
    opened = {shop: ms(breaker_open_delay(load, shop, killed, killed_wall)) for shop in SHOPS}
    limit = OPEN_WITHIN * 1000
    scenario.check(
        "breaker open after the kill", opened, f"<= {limit:.0f} ms", lambda v: v <= limit, " ms"
    )
    first_hits = {shop: ms(since(first_l2_hit(load, shop, restarted), restarted)) for shop in SHOPS}
    limit = L2_WITHIN * 1000
    scenario.check(
        "first L2 hit after the restart",
        first_hits,
        f"<= {limit:.0f} ms",
        lambda v: v <= limit,
        " ms",
    )
    record_latency(scenario, load, killed, restarted, "while killed", check=False)
    record_cart(scenario, load, killed, restarted, kept=False)
    _assert_ok(scenario)


def test_redis_frozen_for_10_seconds(fault_redis: RedisServer, shops: Shops) -> None:
    if fault_redis.process is None:  # the kill scenario failed before its restart
        fault_redis.start()
    wait_closed(shops)
    scenario = Scenario("(b) freeze")
    with Load(shops.urls) as load:
        start = time.monotonic()
        sleep_until(start + 2.4)
        load.watch(1.5, WATCH)
        sleep_until(start + 2.5)
        frozen, frozen_wall = time.monotonic(), time.time()
        fault_redis.freeze()  # SIGSTOP
        sleep_until(frozen + 10)
        thawed = time.monotonic()
        fault_redis.thaw()
        sleep_until(thawed + 3)
    record_counts(scenario, load)
    opened = {shop: ms(breaker_open_delay(load, shop, frozen, frozen_wall)) for shop in SHOPS}
    scenario.info("breaker open after the freeze", opened, " ms")
    record_latency(scenario, load, frozen, thawed, "during the freeze")
    record_cart(scenario, load, frozen, thawed, kept=True)
    _assert_ok(scenario)


def test_slow_network_to_redis(private_redis: RedisServer, tmp_path: Path) -> None:
    scenario = Scenario("(c) +200 ms")
    with (
        LatencyProxy(private_redis.port) as proxy,
        running_shops(tmp_path, proxy.url) as shops,
        Load(shops.urls) as load,
    ):
        start = time.monotonic()
        sleep_until(start + 2.9)
        load.watch(1.5, WATCH)
        sleep_until(start + 3)
        offsets = {shop: shops.logs[shop].stat().st_size for shop in SHOPS}
        slowed, slowed_wall = time.monotonic(), time.time()
        proxy.delay = PROXY_DELAY
        sleep_until(slowed + 8)
        restored = time.monotonic()
        proxy.delay = 0.0
        load.watch(3, WATCH)
        sleep_until(restored + 4)
        logs = {shop: shops.logs[shop].read_bytes()[offsets[shop] :].decode() for shop in SHOPS}
    record_counts(scenario, load)
    opened = {shop: breaker_opened(load, shop, slowed) for shop in SHOPS}
    scenario.check(
        "breaker open after the slowdown",
        {
            s: ms(v.opened_at - slowed_wall) if v and v.sent < restored else None
            for s, v in opened.items()
        },
        "opens while slow",
        lambda v: True,
        " ms",
    )
    errors = {}
    for shop in SHOPS:
        before, after = load.last_stat_before(shop, slowed), load.last_stat_before(shop, restored)
        errors[shop] = (after.errors - before.errors) if before and after else None
    scenario.info("redis errors while slow", errors)
    scenario.info("connections through the proxy", {"django": f"{proxy.connections} (both shops)"})
    # The warning is rate-limited (one line per 10 s and layer): at least one per shop.
    kinds = {
        shop: sorted(set(re.findall(r"Redis call failed \([^)]*\): (\w+)", text)))
        for shop, text in logs.items()
    }
    scenario.check(
        "failures logged as timeouts",
        {s: "TimeoutError" in k for s, k in kinds.items()},
        "yes",
        bool,
    )
    scenario.info("exceptions in the log", {s: ",".join(k) or "none" for s, k in kinds.items()})
    record_latency(scenario, load, slowed, restored, "while slow")
    closed = {
        shop: ms(since(load.first_stat(shop, restored, lambda s: s.circuit == "closed"), restored))
        for shop in SHOPS
    }
    scenario.info("breaker closed after the restore", closed, " ms")
    record_cart(scenario, load, slowed, restored, kept=True)
    _assert_ok(scenario)
