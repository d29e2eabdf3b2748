"""Model-based test of the engine: a hypothesis state machine drives a ``Cache`` and a plain
dict model side by side and asserts they never diverge.

Three configurations run the same machine: memory only, an in-process L1 (no L1 TTL) in front
of Redis, and Redis only. Every Redis test uses the private server of the ``redis_url`` fixture,
flushed (and given a fresh namespace) for every example.

Time. The cache reads an injected fake clock; the model computes expiry from the same clock
with the same float arithmetic (``now + ttl``), so the boundary ``now == expiry`` (a miss) is
exercised exactly. Redis, however, expires keys on *real* time (``SET ... PX``), and the engine
sets ``PX = (expiry - fake_now)``. We therefore only ever use TTLs of at least 1000 s, while an
example runs for well under a second of real time: Redis never expires anything by itself
during a test, so expiry is driven by the fake clock alone, which may then jump by thousands of
seconds. The one consequence the model must know about is that an entry expired on the fake
clock (or invalidated by a tag) may still *physically* exist in Redis; ``add`` (SET NX) and the
return value of ``delete`` see that physical copy, so for those two operations the model
accepts both answers in that state (and follows the engine's answer), while it is exact for a
live entry and for a key that was never written. (``add`` over a tag-invalidated copy must
store: ``test_add_after_tag_invalidation_stores`` pins that down.)
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from cachekit_core import Cache, MemoryLayer

redis = pytest.importorskip("redis")

START = 1_700_000_000.0  # an integral float: sums with the advances below stay exact
DEFAULT_TTL = 2000
MISSING = object()

KEYS = st.sampled_from(["a", "b", "user:1", "k y", "ü", "#", "", "e:a"])
TAGS = st.lists(st.sampled_from(["t1", "t2", "t 3"]), max_size=2, unique=True)
# None means "the cache's default_ttl"; 0 means "do not store" (set: delete instead).
TTLS = st.sampled_from([None, 0, 1000, 3000])
ADVANCES = st.sampled_from([0.5, 999.5, 1000.0, 2000.0, 3000.0])
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(0, 9), max_size=2),
)

SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class ModelEntry:
    value: Any
    expires: float
    tags: frozenset[str]


def build_cache(config: str, url: str | None, namespace: str, clock: Any) -> Cache:
    options: dict[str, Any] = {"namespace": namespace, "default_ttl": DEFAULT_TTL, "clock": clock}
    if config == "memory":
        return Cache([MemoryLayer(maxsize=1000)], **options)
    assert url is not None
    options["secret_key"] = "test-secret"
    if config == "l1_l2":
        return Cache.from_url(url, l1=True, l1_ttl=None, **options)
    return Cache.from_url(url, l1=False, **options)


class CacheMachine(RuleBasedStateMachine):
    def __init__(self, config: str, url: str | None, admin: Any) -> None:
        super().__init__()
        self.config = config
        self.shared = config != "memory"
        self.now = START
        if admin is not None:
            admin.flushdb()
        namespace = f"st{uuid.uuid4().hex[:12]}"
        self.cache = build_cache(config, url, namespace, lambda: self.now)
        self.model: dict[str, ModelEntry] = {}
        # Keys that have a physical copy somewhere (written, not deleted or cleared since).
        self.written: set[str] = set()
        self.loads = 0

    # -- model helpers -------------------------------------------------------------------------
    def _live(self, key: str) -> ModelEntry | None:
        entry = self.model.get(key)
        if entry is not None and self.now < entry.expires:
            return entry
        return None

    def _store(self, key: str, value: Any, ttl: float | None, tags: list[str]) -> None:
        effective = DEFAULT_TTL if ttl is None else ttl
        self.model[key] = ModelEntry(value, self.now + effective, frozenset(tags))
        self.written.add(key)

    def _forget(self, key: str) -> None:
        self.model.pop(key, None)
        self.written.discard(key)

    def _check_delete_result(self, key: str, result: bool) -> None:
        if self._live(key) is not None:
            assert result is True, f"delete({key!r}) of a live entry returned {result}"
        elif key not in self.written:
            assert result is False, f"delete({key!r}) of a never-written key returned {result}"

    # -- rules -----------------------------------------------------------------------------------
    @initialize()
    def start(self) -> None:
        assert self.cache.get("a", MISSING) is MISSING

    @rule(key=KEYS, value=VALUES, ttl=TTLS, tags=TAGS)
    def set(self, key: str, value: Any, ttl: float | None, tags: list[str]) -> None:
        result = self.cache.set(key, value, ttl=ttl, tags=tags)
        if ttl is not None and ttl <= 0:
            assert result is False
            self._forget(key)
        else:
            assert result is True
            self._store(key, value, ttl, tags)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        entry = self._live(key)
        expected = MISSING if entry is None else entry.value
        got = self.cache.get(key, MISSING)
        assert got == expected, f"get({key!r}) at t+{self.now - START}"
        if expected is not MISSING:
            assert type(got) is type(expected)

    @rule(keys=st.lists(KEYS, max_size=4))
    def get_many(self, keys: list[str]) -> None:
        expected = {k: e.value for k in keys if (e := self._live(k)) is not None}
        assert self.cache.get_many(keys) == expected

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        self._check_delete_result(key, self.cache.delete(key))
        self._forget(key)

    @rule(keys=st.lists(KEYS, max_size=3, unique=True))
    def delete_many(self, keys: list[str]) -> None:
        removed = self.cache.delete_many(keys)
        live = sum(self._live(k) is not None for k in keys)
        assert removed >= live
        assert removed <= len([k for k in keys if k in self.written])
        for key in keys:
            self._forget(key)

    @rule(mapping=st.dictionaries(KEYS, VALUES, max_size=3), ttl=TTLS, tags=TAGS)
    def set_many(self, mapping: dict[str, Any], ttl: float | None, tags: list[str]) -> None:
        result = self.cache.set_many(mapping, ttl=ttl, tags=tags)
        stores = bool(mapping) and (ttl is None or ttl > 0)
        assert result is stores
        for key, value in mapping.items():
            if stores:
                self._store(key, value, ttl, tags)
            else:
                self._forget(key)

    @rule(key=KEYS, value=VALUES, ttl=TTLS, tags=TAGS)
    def add(self, key: str, value: Any, ttl: float | None, tags: list[str]) -> None:
        result = self.cache.add(key, value, ttl=ttl, tags=tags)
        if ttl is not None and ttl <= 0:
            assert result is False  # nothing to store; nothing changes
            return
        if self._live(key) is not None:
            assert result is False, f"add({key!r}) replaced a live entry"
        elif not self.shared or key not in self.written:
            assert result is True, f"add({key!r}) refused a key that holds nothing"
        # else: a dead copy may still sit in Redis (see the module docstring): follow the engine.
        if result:
            self._store(key, value, ttl, tags)

    @rule(key=KEYS, ttl=TTLS, tags=TAGS)
    def get_or_set(self, key: str, ttl: float | None, tags: list[str]) -> None:
        calls: list[str] = []

        def loader() -> str:
            self.loads += 1
            calls.append(f"loaded-{self.loads}")
            return calls[-1]

        entry = self._live(key)
        got = self.cache.get_or_set(key, loader, ttl=ttl, tags=tags)
        if entry is not None:
            assert calls == [], "the loader ran although a live value was cached"
            assert got == entry.value
        else:
            assert len(calls) == 1, "the loader must run exactly once on a miss"
            assert got == calls[0]
            if ttl is None or ttl > 0:
                self._store(key, got, ttl, tags)

    @rule(tags=TAGS)
    def invalidate_tags(self, tags: list[str]) -> None:
        self.cache.invalidate_tags(*tags)
        for key in [k for k, e in self.model.items() if e.tags & set(tags)]:
            del self.model[key]  # a miss from now on; a physical copy may remain (`written`)

    @rule()
    def clear(self) -> None:
        self.cache.clear()
        self.model.clear()
        self.written.clear()

    @rule(seconds=ADVANCES)
    def advance_clock(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def no_errors(self) -> None:
        stats = self.cache.stats()
        assert stats["errors"] == 0
        assert stats["corrupt"] == 0
        assert stats["loader_errors"] == 0

    def teardown(self) -> None:
        self.cache.close()


@pytest.fixture
def admin(request: pytest.FixtureRequest) -> Iterator[Any]:
    url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    try:
        yield client
    finally:
        client.close()


def test_model_memory_only() -> None:
    run_state_machine_as_test(lambda: CacheMachine("memory", None, None), settings=SETTINGS)


@pytest.mark.parametrize("config", ["l1_l2", "redis"])
def test_model_with_redis(config: str, redis_url: str, admin: Any) -> None:
    run_state_machine_as_test(lambda: CacheMachine(config, redis_url, admin), settings=SETTINGS)


# -- divergences the machine tolerates, pinned down one by one ----------------------------------

REDIS_CONFIGS = ["l1_l2", "redis"]


@pytest.mark.parametrize(
    "config",
    [
        "memory",
        *(c for c in REDIS_CONFIGS),
    ],
)
def test_add_after_tag_invalidation_stores(config: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("redis_url") if config != "memory" else None
    cache = build_cache(config, url, "addbug", lambda: START)
    try:
        cache.set("k", "old", tags=["t"])
        cache.invalidate_tags("t")
        assert cache.get("k", MISSING) is MISSING
        assert cache.add("k", "new") is True
        assert cache.get("k") == "new"
    finally:
        cache.close()


@pytest.mark.parametrize("config", ["memory", *REDIS_CONFIGS])
def test_fake_clock_boundaries(config: str, request: pytest.FixtureRequest) -> None:
    """The sanity check the machine relies on: expiry is exact on the fake clock, and Redis
    does not expire a long-TTL entry on its own while the fake clock jumps."""
    url = request.getfixturevalue("redis_url") if config != "memory" else None
    now = [START]
    cache = build_cache(config, url, "clock", lambda: now[0])
    try:
        cache.set("k", 1, ttl=1000)
        cache.set("forever", 2, ttl=math.inf)
        now[0] += 999.5
        assert cache.get("k") == 1
        now[0] += 0.5  # exactly at expiry: a miss
        assert cache.get("k", MISSING) is MISSING
        assert cache.get("forever") == 2
        assert cache.get_or_set("k", lambda: 3) == 3
        assert cache.get("k") == 3
    finally:
        cache.close()
