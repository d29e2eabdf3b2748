"""Concurrent misses on one page key render once (issue 10, item 1): threads and asyncio tasks
on one ``HttpCache``, memory and Redis; hit-for-miss for responses that cannot be stored; a
waiter never waits past ``lock_wait``."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from cachekit_core import Cache
from cachekit_core.httpcache import (
    BYPASS,
    HIT,
    MISS,
    STALE,
    HttpCache,
    Request,
    Response,
    ViewOptions,
)

VIEW = ViewOptions(ttl=60, cache_control="public, max-age=60")
RENDER = 0.2  # seconds a render takes


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest, clock: Clock) -> Iterator[Cache]:
    options = {"namespace": "coalesce", "lock_wait": 5.0, "lock_ttl": 10.0, "clock": clock}
    if request.param == "memory":
        built = Cache(**options)  # type: ignore[arg-type]
    else:
        built = Cache.from_url(
            request.getfixturevalue("redis_url"), secret_key="test-secret", **options
        )
    yield built
    built.close()


def req(path: str = "/p", user: str | None = None, **headers: str) -> Request:
    pairs = [(k.replace("_", "-"), v) for k, v in headers.items()]
    return Request("GET", "http", "testserver", path, "", pairs, user)


def x_cache(response: Response) -> str | None:
    return next((v for k, v in response.headers if k.lower() == "x-cache"), None)


class Page:
    """A view that takes ``RENDER`` seconds and counts its renders (thread-safe)."""

    def __init__(self, *headers: tuple[str, str], seconds: float = RENDER) -> None:
        self.headers = list(headers)
        self.seconds = seconds
        self.renders = 0
        self._lock = threading.Lock()

    def response(self) -> Response:
        with self._lock:
            self.renders += 1
            n = self.renders
        return Response(200, [("Content-Type", "text/plain"), *self.headers], b"page %d" % n)

    def render(self) -> Response:
        time.sleep(self.seconds)
        return self.response()

    async def arender(self) -> Response:
        await asyncio.sleep(self.seconds)
        return self.response()


def serve(
    http: HttpCache,
    page: Page,
    request: Request,
    view: ViewOptions | None = VIEW,
    bind: bool = False,
) -> Response:
    """One request as an adapter makes it: lookup (then bind, as a decorated view does)."""
    lookup = http.lookup(request, None if bind else view)
    if lookup.response is None and bind and view is not None:
        lookup = http.bind_view(lookup, view)
    if lookup.response is not None:
        return lookup.response
    return http.store(lookup, page.render())


async def aserve(
    http: HttpCache,
    page: Page,
    request: Request,
    view: ViewOptions | None = VIEW,
    bind: bool = False,
) -> Response:
    lookup = await http.alookup(request, None if bind else view)
    if lookup.response is None and bind and view is not None:
        lookup = await http.abind_view(lookup, view)
    if lookup.response is not None:
        return lookup.response
    return await http.astore(lookup, await page.arender())


def burst(n: int, call: Callable[[], Response]) -> tuple[list[Response], float]:
    """``n`` threads calling ``call`` at once: their responses and the wall time."""
    results: list[Response | None] = [None] * n
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert all(r is not None for r in results)
    return [r for r in results if r is not None], time.perf_counter() - began


async def aburst(n: int, call: Callable[[], object]) -> tuple[list[Response], float]:
    began = time.perf_counter()
    responses = await asyncio.gather(*(call() for _ in range(n)))  # type: ignore[misc]
    return list(responses), time.perf_counter() - began


@pytest.mark.parametrize("bind", [False, True], ids=["view-at-lookup", "view-bound-later"])
def test_threads_on_a_cold_page_render_once(cache: Cache, bind: bool) -> None:
    http, page = HttpCache(cache), Page()
    responses, _ = burst(50, lambda: serve(http, page, req(), bind=bind))
    assert page.renders == 1
    states = sorted(x_cache(r) or "" for r in responses)
    assert states == [HIT] * 49 + [MISS]
    assert {r.body for r in responses} == {b"page 1"}


@pytest.mark.parametrize("bind", [False, True], ids=["view-at-lookup", "view-bound-later"])
async def test_tasks_on_a_cold_page_render_once(cache: Cache, bind: bool) -> None:
    http, page = HttpCache(cache), Page()
    try:
        responses, _ = await aburst(100, lambda: aserve(http, page, req(), bind=bind))
    finally:
        await cache.aclose()  # this loop's Redis connections
    assert page.renders == 1
    assert sorted(x_cache(r) or "" for r in responses) == [HIT] * 99 + [MISS]


def test_a_just_expired_page_without_a_stale_window_renders_once(
    cache: Cache, clock: Clock
) -> None:
    http, page = HttpCache(cache), Page()
    serve(http, page, req())
    clock.advance(61)  # ttl=60, no stale window
    responses, _ = burst(50, lambda: serve(http, page, req(), bind=True))
    assert page.renders == 2
    assert {r.body for r in responses} == {b"page 2"}
    assert sorted(x_cache(r) or "" for r in responses) == [HIT] * 49 + [MISS]


def test_the_stale_window_still_serves_stale_while_one_renders(cache: Cache, clock: Clock) -> None:
    http, page = HttpCache(cache), Page()
    view = ViewOptions(ttl=60, stale_ttl=60)
    serve(http, page, req(), view)
    clock.advance(61)
    responses, wall = burst(30, lambda: serve(http, page, req(), view, bind=True))
    assert page.renders == 2
    assert sorted(x_cache(r) or "" for r in responses) == [MISS] + [STALE] * 29
    assert wall < 2 * RENDER + 1


def test_an_unstorable_page_is_rendered_in_parallel_and_marked_hit_for_miss(
    cache: Cache,
) -> None:
    seconds = 0.4
    http, page = HttpCache(cache), Page(("Set-Cookie", "visitor=1"), seconds=seconds)
    responses, wall = burst(50, lambda: serve(http, page, req(), bind=True))
    assert page.renders == 50
    assert {x_cache(r) for r in responses} == {MISS}
    assert wall < 3 * seconds, wall  # the leader's render, then everyone else's at once
    # The next burst does not queue behind a leader at all: the key is hit-for-miss.
    responses, wall = burst(50, lambda: serve(http, page, req(), bind=True))
    assert page.renders == 100
    assert wall < 2 * seconds, wall


def test_hit_for_miss_expires_and_a_storable_response_replaces_it(
    cache: Cache, clock: Clock
) -> None:
    http, page = HttpCache(cache), Page(("Set-Cookie", "visitor=1"))
    serve(http, page, req())
    lookup = http.lookup(req(), VIEW)
    assert lookup.state == MISS and lookup.claim is None  # hit-for-miss: no claim, no wait
    page.headers = []
    http.store(lookup, page.render())  # storable now: stored over the marker
    assert x_cache(serve(http, page, req())) == HIT
    clock.advance(61)
    page.headers = [("Set-Cookie", "visitor=1")]
    serve(http, page, req())  # marks the key for min(ttl, 10 s)
    clock.advance(11)
    fresh = http.lookup(req(), VIEW)
    assert fresh.claim is not None  # the marker expired: this miss leads again
    http.release(fresh)


def test_a_waiter_never_waits_past_lock_wait_for_a_crashed_renderer(clock: Clock) -> None:
    cache = Cache(namespace="crash", lock_wait=0.3, lock_ttl=30.0, clock=clock)
    http = HttpCache(cache)
    crashed = http.lookup(req(), VIEW)  # claims the key, never stores nor releases
    assert crashed.claim is not None
    began = time.perf_counter()
    waiter = http.lookup(req(), VIEW)
    waited = time.perf_counter() - began
    assert waiter.state == MISS and waiter.response is None and waiter.claim is None
    assert 0.25 < waited < 1.0


def test_a_waiter_stops_waiting_when_the_claim_expires(redis_url: str) -> None:
    cache = Cache.from_url(
        redis_url, namespace="crash", secret_key="s", lock_wait=5.0, lock_ttl=0.3
    )
    try:
        http = HttpCache(cache)
        crashed = http.lookup(req(), VIEW)
        assert crashed.claim is not None
        began = time.perf_counter()
        waiter = http.lookup(req(), VIEW)  # the claim's TTL ends the wait: this one leads
        assert waiter.claim is not None
        assert time.perf_counter() - began < 1.0
        http.release(waiter)
    finally:
        cache.close()


def test_release_without_storing_frees_the_waiters_at_once(cache: Cache) -> None:
    """A streamed response (or an app that raised) calls ``release``: the waiters render for
    themselves right away instead of queueing one after the other."""
    http = HttpCache(cache)
    leader = http.lookup(req(), VIEW)
    assert leader.claim is not None
    got: list[float] = []

    def wait() -> None:
        lookup = http.lookup(req(), VIEW)
        got.append(time.perf_counter())
        assert lookup.state == MISS and lookup.claim is None

    threads = [threading.Thread(target=wait) for _ in range(10)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    released = time.perf_counter()
    http.release(leader)
    for t in threads:
        t.join(5)
    assert len(got) == 10 and max(got) - released < 0.2


def test_bypassed_and_undecorated_requests_never_claim(cache: Cache) -> None:
    http = HttpCache(cache)
    bypass = http.lookup(req(Authorization="Bearer x"), VIEW)
    assert bypass.state == BYPASS and bypass.claim is None
    undecorated = http.lookup(req(), None)  # not (yet) a decorated view: no claim, no wait
    assert undecorated.state == MISS and undecorated.claim is None
    assert http.lookup(req(), VIEW).claim is not None


def test_per_user_pages_coalesce_per_user(cache: Cache) -> None:
    http, page = HttpCache(cache), Page()
    view = ViewOptions(ttl=60, per_user=True)
    _responses, wall = burst(
        40, lambda: serve(http, page, req(user=threading.current_thread().name[-1]), view, True)
    )
    users = {str(i) for i in range(10)}
    assert page.renders <= len(users)
    assert wall < 3 * RENDER + 1


def test_vary_variants_coalesce_each_on_its_own_key(cache: Cache) -> None:
    http, page = HttpCache(cache), Page(("Vary", "Accept-Language"))
    serve(http, page, req(Accept_Language="fr"))  # the Vary marker is stored
    languages = itertools.cycle(["de", "en"])
    responses, _ = burst(
        40, lambda: serve(http, page, req(Accept_Language=next(languages)), bind=True)
    )
    assert page.renders - 1 <= 2  # one per new variant
    assert sum(x_cache(r) == MISS for r in responses) == page.renders - 1


def test_shared_cache_mode_coalesces_undecorated_responses(cache: Cache) -> None:
    from cachekit_core.httpcache import HttpSettings

    http = HttpCache(cache, HttpSettings(shared_cache=True))
    page = Page(("Cache-Control", "public, max-age=60"))
    responses, _ = burst(40, lambda: serve(http, page, req(), None))
    assert page.renders == 1
    assert sorted(x_cache(r) or "" for r in responses) == [HIT] * 39 + [MISS]
