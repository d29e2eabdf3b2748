"""cachekit's core hit paths measured side by side with their peers, in one process.

Every figure is a median over interleaved rounds: in each round every contender of a group
runs its operations in slices taken in turn with the other contenders' (A B C A B C ..., the
order alternating from round to round), so drift and bursts of noise on a busy machine fall on
all of them alike; the per-op figure of a contender is the median of its rounds. Each
contender is one callable taking one argument, timed in a plain loop::

    for _ in range(n): fn(arg)            # sync
    for _ in range(n): await fn(arg)      # async, inside one long-lived event loop

so loop overhead (measured as ``loop_overhead_ns``) is the same on both sides of a ratio.
The garbage collector is paused inside timed loops (as ``timeit`` does) for every contender.

Run through ``bench/run.py`` (it owns the venv and the private redis-server); this module only
needs a Redis URL.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

perf_counter_ns = time.perf_counter_ns
# A cache with a Redis layer needs a secret (or allow_unsigned=True): entries are signed.
BENCH_SECRET = "bench-secret"

# A user record: ~200 bytes once serialized, the size of a typical cached row.
USER: dict[str, Any] = {
    "id": 42,
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "roles": ["admin", "editor"],
    "active": True,
    "score": 98.5,
    "bio": "Mathematician and writer, known for her work on the Analytical Engine. " * 2,
}


# -- timing loops ----------------------------------------------------------------------------
def _time_sync(fn: Callable[[Any], Any], arg: Any, n: int) -> float:
    rng = range(n)
    start = perf_counter_ns()
    for _ in rng:
        fn(arg)
    return (perf_counter_ns() - start) / n


async def _time_async(fn: Callable[[Any], Awaitable[Any]], arg: Any, n: int) -> float:
    rng = range(n)
    start = perf_counter_ns()
    for _ in rng:
        await fn(arg)
    return (perf_counter_ns() - start) / n


@contextmanager
def _no_gc() -> Iterator[None]:
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class Contender:
    name: str  # short id, used in JSON
    label: str  # human label
    fn: Callable[[Any], Any]
    arg: Any
    is_async: bool = False
    samples: list[float] = field(default_factory=list)  # ns/op, one per round
    slice_samples: list[float] = field(default_factory=list)  # ns/op, one per slice

    def run(self, loop: asyncio.AbstractEventLoop, n: int) -> float:
        with _no_gc():
            if self.is_async:
                return loop.run_until_complete(_time_async(self.fn, self.arg, n))
            return _time_sync(self.fn, self.arg, n)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Group:
    """Contenders measured together, interleaved round by round."""

    name: str
    iterations: int
    contenders: list[Contender]

    def by_name(self) -> dict[str, Contender]:
        return {c.name: c for c in self.contenders}


@dataclass
class Row:
    """One line of the report: ``subject`` beside ``peer`` (or an absolute bound)."""

    case: str
    subject: str  # contender name (group-qualified) measured
    peer: str | None  # contender name, or None for an absolute target
    target: str  # human text
    check: Callable[[float, float | None], bool] | None  # (subject_ns, ratio) -> ok; None: info
    note: str = ""


# -- setup of the contenders -----------------------------------------------------------------
class Bench:
    def __init__(self, redis_url: str, *, mem_iters: int, redis_iters: int) -> None:
        self.url = redis_url
        self.mem_iters = mem_iters
        self.redis_iters = redis_iters
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.groups: list[Group] = []
        self.rows: list[Row] = []
        self.meta: dict[str, Any] = {}
        self._closers: list[Callable[[], Any]] = []
        self._aclosers: list[Callable[[], Awaitable[Any]]] = []

    # in-memory decorator hits ------------------------------------------------------------------
    def setup_l1_sync(self) -> None:
        import cachetools

        from cachekit_core import Cache

        ck = Cache()
        self._closers.append(ck.close)

        @ck.cached(ttl=60, key="user:{uid}")
        def ck_user(uid: int) -> dict[str, Any]:
            return USER

        lru: cachetools.LRUCache[Any, Any] = cachetools.LRUCache(maxsize=10_000)

        @cachetools.cached(lru)
        def lru_user(uid: int) -> dict[str, Any]:
            return USER

        ttl: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(maxsize=10_000, ttl=60)

        @cachetools.cached(ttl)
        def ttl_user(uid: int) -> dict[str, Any]:
            return USER

        for f in (ck_user, lru_user, ttl_user):
            assert f(42) is USER  # fill
            assert f(42) is USER  # hit
        assert ck.stats()["layers"]["memory"]["hits"] >= 1, "cachekit did not hit L1"

        n = self.mem_iters
        self.groups.append(
            Group(
                "l1_sync",
                n,
                [
                    Contender("cachekit", "cachekit @cache.cached (def)", ck_user, 42),
                    Contender("cachetools_lru", "cachetools @cached(LRUCache)", lru_user, 42),
                    Contender("cachetools_ttl", "cachetools @cached(TTLCache)", ttl_user, 42),
                ],
            )
        )
        # The issue names no bound for this case: parity with the like-for-like peer (a TTL'd
        # LRU, as cachekit's L1 entries expire) is the target; the plain LRU is shown as info.
        self.rows += [
            Row(
                "L1 hit, sync decorator",
                "l1_sync.cachekit",
                "l1_sync.cachetools_ttl",
                "<= 1.00x (parity)",
                lambda ns, r: r is not None and r <= 1.00,
                "team measured cachetools ~840 ns",
            ),
            Row(
                "L1 hit, sync decorator",
                "l1_sync.cachekit",
                "l1_sync.cachetools_lru",
                "info",
                None,
                "LRUCache checks no expiry",
            ),
        ]

    def setup_l1_async(self) -> None:
        import aiocache
        import cashews

        from cachekit_core import Cache

        ck = Cache()
        self._closers.append(ck.close)

        @ck.cached(ttl=60, key="user:{uid}")
        async def ck_user(uid: int) -> dict[str, Any]:
            return USER

        @aiocache.cached(ttl=60)
        async def aio_user(uid: int) -> dict[str, Any]:
            return USER

        mem = cashews.Cache(name="bench-mem")
        mem.setup("mem://", size=10_000)

        @mem(ttl=60)
        async def cashews_user(uid: int) -> dict[str, Any]:
            return USER

        async def fill() -> None:
            for f in (ck_user, aio_user, cashews_user):
                assert await f(42) == USER
                assert await f(42) == USER

        self.loop.run_until_complete(fill())
        assert ck.stats()["layers"]["memory"]["hits"] >= 1, "cachekit did not hit L1"

        n = self.mem_iters
        self.groups.append(
            Group(
                "l1_async",
                n,
                [
                    Contender("cachekit", "cachekit @cache.cached (async def)", ck_user, 42, True),
                    Contender(
                        "aiocache", "aiocache @cached (SimpleMemoryCache)", aio_user, 42, True
                    ),
                    Contender("cashews_mem", "cashews @cache (mem://)", cashews_user, 42, True),
                ],
            )
        )
        self.rows += [
            Row(
                "L1 hit, async decorator",
                "l1_async.cachekit",
                None,
                "<= 2000 ns",
                lambda ns, r: ns <= 2000,
                "absolute bound",
            ),
            Row(
                "L1 hit, async decorator",
                "l1_async.cachekit",
                "l1_async.aiocache",
                "<= 0.10x (>= 10x faster)",
                lambda ns, r: r is not None and r <= 0.10,
                "team measured aiocache ~21.8 us",
            ),
            Row(
                "L1 hit, async decorator",
                "l1_async.cachekit",
                "l1_async.cashews_mem",
                "info",
                None,
                "team measured cashews ~44.6 us",
            ),
        ]

    # L2 (Redis only) -------------------------------------------------------------------------
    def setup_l2_sync(self) -> None:
        import redis

        from cachekit_core import Cache, RedisLayer

        # Signed, as every Redis cache is by default: the HMAC check is part of each hit.
        ck = Cache(layers=[RedisLayer(self.url)], namespace="bench", secret_key=BENCH_SECRET)
        self._closers.append(ck.close)
        ck.set("user:42", USER, ttl=3600)
        ck.set("user:43", USER, ttl=3600, tags=["team:7"])
        assert ck.get("user:42") == USER and ck.get("user:43") == USER, "cachekit L2 miss"

        raw = redis.Redis.from_url(self.url)
        self._closers.append(raw.close)
        blob = raw.get("bench:e:user:42")
        tagged_blob = raw.get("bench:e:user:43")
        assert blob is not None and tagged_blob is not None
        raw.set("raw:user:42", blob)  # the very same bytes cachekit reads: equal size
        self.meta["l2_value_bytes"] = {"no_tag": len(blob), "tag": len(tagged_blob)}

        dj = _django_cache(self.url)
        dj.set("user:42", USER, timeout=3600)
        assert dj.get("user:42") == USER

        trips = {
            "cachekit_get_notag": count_round_trips(lambda: ck.get("user:42")),
            "cachekit_get_tag": count_round_trips(lambda: ck.get("user:43")),
            "raw_get": count_round_trips(lambda: raw.get("raw:user:42")),
        }
        self.meta["round_trips_sync"] = trips

        self.groups.append(
            Group(
                "l2_sync",
                self.redis_iters,
                [
                    Contender("raw", "redis-py GET (raw bytes)", raw.get, "raw:user:42"),
                    Contender(
                        "cachekit_notag", "cachekit cache.get (L2, no tag)", ck.get, "user:42"
                    ),
                    Contender("cachekit_tag", "cachekit cache.get (L2, 1 tag)", ck.get, "user:43"),
                    Contender("django_redis", "django-redis cache.get", dj.get, "user:42"),
                ],
            )
        )
        within = lambda ns, r: r is not None and r <= 1.10  # noqa: E731
        self.rows += [
            Row(
                "L2 hit, sync get, no tag",
                "l2_sync.cachekit_notag",
                "l2_sync.raw",
                "<= 1.10x",
                within,
                f"round trips/get: {trips['cachekit_get_notag']}",
            ),
            Row(
                "L2 hit, sync get, 1 tag",
                "l2_sync.cachekit_tag",
                "l2_sync.raw",
                "<= 1.10x",
                within,
                f"tag check included; round trips/get: {trips['cachekit_get_tag']}",
            ),
            Row(
                "L2 hit, sync get (peer)",
                "l2_sync.django_redis",
                "l2_sync.raw",
                "info",
                None,
                "django-redis vs raw; team measured ~1.35x",
            ),
            Row(
                "L2 hit, sync get, no tag",
                "l2_sync.cachekit_notag",
                "l2_sync.django_redis",
                "info",
                None,
                "cachekit vs django-redis",
            ),
        ]

    def setup_l2_async(self) -> None:
        import cashews
        import redis.asyncio

        from cachekit_core import Cache, RedisLayer

        ck = Cache(layers=[RedisLayer(self.url)], namespace="abench", secret_key=BENCH_SECRET)
        raw = redis.asyncio.Redis.from_url(self.url)
        cw = cashews.Cache(name="bench-redis")
        cw.setup(self.url, client_side=False)

        async def fill() -> dict[str, Any]:
            await ck.aset("user:42", USER, ttl=3600)
            await ck.aset("user:43", USER, ttl=3600, tags=["team:7"])
            assert await ck.aget("user:42") == USER and await ck.aget("user:43") == USER
            blob = await raw.get("abench:e:user:42")
            assert blob is not None
            await raw.set("raw:auser:42", blob)
            await cw.set("cw:user:42", USER, expire=3600)
            assert await cw.get("cw:user:42") == USER
            return {
                "cachekit_aget_notag": await acount_round_trips(lambda: ck.aget("user:42")),
                "cachekit_aget_tag": await acount_round_trips(lambda: ck.aget("user:43")),
                "raw_get": await acount_round_trips(lambda: raw.get("raw:auser:42")),
            }

        trips = self.loop.run_until_complete(fill())
        self.meta["round_trips_async"] = trips

        async def aclose() -> None:
            await ck.aclose()
            await raw.aclose()
            await cw.close()

        self._aclosers.append(aclose)

        self.groups.append(
            Group(
                "l2_async",
                self.redis_iters,
                [
                    Contender(
                        "raw", "redis.asyncio GET (raw bytes)", raw.get, "raw:auser:42", True
                    ),
                    Contender(
                        "cachekit_notag",
                        "cachekit await cache.aget (L2, no tag)",
                        ck.aget,
                        "user:42",
                        True,
                    ),
                    Contender(
                        "cachekit_tag",
                        "cachekit await cache.aget (L2, 1 tag)",
                        ck.aget,
                        "user:43",
                        True,
                    ),
                    Contender(
                        "cashews_redis",
                        "cashews await cache.get (redis://)",
                        cw.get,
                        "cw:user:42",
                        True,
                    ),
                ],
            )
        )
        within = lambda ns, r: r is not None and r <= 1.10  # noqa: E731
        self.rows += [
            Row(
                "L2 hit, async aget, no tag",
                "l2_async.cachekit_notag",
                "l2_async.raw",
                "<= 1.10x",
                within,
                f"round trips/aget: {trips['cachekit_aget_notag']}",
            ),
            Row(
                "L2 hit, async aget, 1 tag",
                "l2_async.cachekit_tag",
                "l2_async.raw",
                "<= 1.10x",
                within,
                f"tag check included; round trips/aget: {trips['cachekit_aget_tag']}",
            ),
            Row(
                "L2 hit, async get (peer)",
                "l2_async.cashews_redis",
                "l2_async.raw",
                "info",
                None,
                "cashews vs raw; team measured ~2.15x",
            ),
            Row(
                "L2 hit, async aget, no tag",
                "l2_async.cachekit_notag",
                "l2_async.cashews_redis",
                "info",
                None,
                "cachekit vs cashews",
            ),
        ]

    # measuring ---------------------------------------------------------------------------------
    def loop_overhead(self) -> dict[str, float]:
        def noop(_: Any) -> None:
            return None

        async def anoop(_: Any) -> None:
            return None

        sync = [Contender("noop", "noop", noop, 0).run(self.loop, self.mem_iters) for _ in range(5)]
        asy = [
            Contender("anoop", "anoop", anoop, 0, True).run(self.loop, self.mem_iters)
            for _ in range(5)
        ]
        return {"sync": statistics.median(sync), "async": statistics.median(asy)}

    def run(
        self, rounds: int, *, slices: int = 10, progress: Callable[[str], None] | None = None
    ) -> None:
        """One warm-up pass (not recorded), then ``rounds`` rounds. Within a round each
        contender's ``iterations`` are cut into ``slices`` chunks run in turn with the other
        contenders' chunks (A B C A B C ...), so a burst of noise lands on all of them; the
        round's figure of a contender is its total time over its total operations, and the
        order of contenders alternates from round to round. Per-slice figures are kept too:
        ratios are taken slice by slice (the two sides ran back to back) and their median
        reported, which cancels most of the machine's noise."""
        for group in self.groups:
            for c in group.contenders:
                c.run(self.loop, max(group.iterations // 4, 100))
        for r in range(rounds):
            for group in self.groups:
                order = group.contenders if r % 2 == 0 else list(reversed(group.contenders))
                chunk = max(group.iterations // slices, 1)
                total = dict.fromkeys((c.name for c in order), 0.0)
                for _ in range(slices):
                    for c in order:
                        ns = c.run(self.loop, chunk)
                        c.slice_samples.append(ns)
                        total[c.name] += ns
                for c in order:
                    c.samples.append(total[c.name] / slices)
            if progress:
                progress(f"round {r + 1}/{rounds} done")

    def close(self) -> None:
        for aclose in self._aclosers:
            try:
                self.loop.run_until_complete(aclose())
            except Exception as exc:  # teardown must not hide results
                print(f"warning: async teardown failed: {exc!r}", file=sys.stderr)
        for close in self._closers:
            try:
                close()
            except Exception as exc:
                print(f"warning: teardown failed: {exc!r}", file=sys.stderr)
        self.loop.close()

    # results -----------------------------------------------------------------------------------
    def contender(self, qualified: str) -> Contender:
        group_name, _, name = qualified.partition(".")
        for group in self.groups:
            if group.name == group_name:
                return group.by_name()[name]
        raise KeyError(qualified)

    def results(self) -> dict[str, Any]:
        contenders = {
            f"{g.name}.{c.name}": {
                "label": c.label,
                "iterations": g.iterations,
                "median_ns": round(c.median, 1),
                "min_ns": round(min(c.samples), 1),
                "max_ns": round(max(c.samples), 1),
                "samples_ns": [round(s, 1) for s in c.samples],
            }
            for g in self.groups
            for c in g.contenders
        }
        rows = []
        for row in self.rows:
            subject = self.contender(row.subject)
            peer = self.contender(row.peer) if row.peer else None
            ratio = paired_ratio(subject, peer) if peer else None
            status = (
                "info"
                if row.check is None
                else ("PASS" if row.check(subject.median, ratio) else "FAIL")
            )
            rows.append(
                {
                    "case": row.case,
                    "subject": row.subject,
                    "subject_label": subject.label,
                    "subject_ns": round(subject.median, 1),
                    "peer": row.peer,
                    "peer_label": peer.label if peer else None,
                    "peer_ns": round(peer.median, 1) if peer else None,
                    "ratio": round(ratio, 3) if ratio is not None else None,
                    "ratio_of_medians": round(subject.median / peer.median, 3) if peer else None,
                    "target": row.target,
                    "status": status,
                    "note": row.note,
                }
            )
        return {"rows": rows, "contenders": contenders, "meta": self.meta}


# -- helpers -----------------------------------------------------------------------------------
def paired_ratio(subject: Contender, peer: Contender) -> float:
    """Median of subject/peer over slices that ran back to back (same round, same slice)."""
    pairs = zip(subject.slice_samples, peer.slice_samples, strict=True)
    return statistics.median(s / p for s, p in pairs)


def _django_cache(url: str) -> Any:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            CACHES={
                "default": {
                    "BACKEND": "django_redis.cache.RedisCache",
                    "LOCATION": url,
                    "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
                }
            },
            USE_TZ=True,
        )
        django.setup()
    from django.core.cache import caches

    # The backend object itself (not the `django.core.cache.cache` proxy, whose per-access
    # lookup would only add to the peer's time).
    return caches["default"]


def count_round_trips(call: Callable[[], Any], n: int = 20) -> float:
    """Replies read from Redis per call (sync redis-py): one reply == one round trip."""
    import redis.connection

    cls = redis.connection.AbstractConnection
    original = cls.read_response
    count = 0

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        return original(self, *args, **kwargs)

    cls.read_response = counting  # type: ignore[method-assign]
    try:
        for _ in range(n):
            call()
    finally:
        cls.read_response = original  # type: ignore[method-assign]
    return count / n


async def acount_round_trips(call: Callable[[], Awaitable[Any]], n: int = 20) -> float:
    """Replies read from Redis per call (redis.asyncio)."""
    import redis.asyncio.connection

    cls = redis.asyncio.connection.AbstractConnection
    original = cls.read_response
    count = 0

    async def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        return await original(self, *args, **kwargs)

    cls.read_response = counting  # type: ignore[method-assign]
    try:
        for _ in range(n):
            await call()
    finally:
        cls.read_response = original  # type: ignore[method-assign]
    return count / n


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for dist in (
        "cachekit-web",
        "cachetools",
        "aiocache",
        "cashews",
        "django",
        "django-redis",
        "redis",
        "hiredis",
        "msgpack",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out
