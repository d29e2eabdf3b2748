"""OpenTelemetry spans (cachekit_core/tracing.py) with the real SDK and a real Redis.

The global tracer provider can be set once per process: one SDK provider serves the session,
its sampler records only while a test of this module runs (so later tests pay nothing), and
the in-memory exporter is cleared around each test. What happens without an SDK, or without
opentelemetry-api at all, runs in a fresh interpreter.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode

from cachekit_core import Cache, tracing
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
REDIS_OPERATIONS = {"GET", "MGET", "SET", "EVALSHA", "PIPELINE", "SCAN"}


class Gate(Sampler):
    """Records spans only while open: the provider outlives this module's tests."""

    def __init__(self) -> None:
        self.open = False

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[Any] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if not self.open:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "Gate"


@pytest.fixture(scope="session")
def otel() -> tuple[Gate, InMemorySpanExporter]:
    gate, exporter = Gate(), InMemorySpanExporter()
    provider = TracerProvider(sampler=gate)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    assert trace.get_tracer_provider() is provider, "another test set the global provider"
    assert tracing.SPANS is not None
    tracing.SPANS.recheck()  # earlier tests ran without a provider: look again now
    return gate, exporter


@pytest.fixture
def spans(otel: tuple[Gate, InMemorySpanExporter]) -> Iterator[InMemorySpanExporter]:
    gate, exporter = otel
    assert tracing.SPANS is not None, "the dev extra installs opentelemetry-api"
    exporter.clear()
    gate.open = True
    yield exporter
    gate.open = False
    exporter.clear()


@pytest.fixture
def tracer(spans: InMemorySpanExporter) -> trace.Tracer:
    return trace.get_tracer("tests")


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def redis_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]


def span_id(span: Any) -> int:
    return int(span.get_span_context().span_id)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def wait_for(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# -- loader spans --------------------------------------------------------------------------------
def test_loader_span_nests_under_the_callers_span(
    redis_url: str, spans: InMemorySpanExporter, tracer: trace.Tracer
) -> None:
    cache = Cache.from_url(redis_url, namespace="trace", secret_key="test-secret")
    # The invalidation listener empties L1 once subscribed: let that happen before the calls.
    cache.set("warm", 1)
    wait_for(lambda: cache.stats()["layers"]["redis"]["listening"])
    time.sleep(0.05)
    spans.clear()
    inside: list[Any] = []

    def loader() -> int:
        inside.append(trace.get_current_span())  # what the loader's own spans would nest in
        return 7

    with tracer.start_as_current_span("request") as request:
        assert cache.get_or_set("k", loader, ttl=60) == 7
        assert cache.get_or_set("k", loader, ttl=60) == 7  # an L1 hit: no span at all
    cache.close()

    [load] = named(spans, "cachekit.load")
    assert load.kind is SpanKind.INTERNAL
    assert dict(load.attributes or {}) == {"cachekit.namespace": "trace"}
    assert parent_id(load) == span_id(request)
    assert load.context is not None
    assert [span_id(s) for s in inside] == [load.context.span_id]
    assert load.status.status_code is StatusCode.UNSET
    # Redis round trips of the miss (read, lock, re-read, write, unlock) also nest under it;
    # the second call was an L1 hit and added none.
    ops = [s.name for s in redis_spans(spans)]
    assert ops == ["GET", "SET", "GET", "PIPELINE", "EVALSHA"]
    assert all(parent_id(s) == span_id(request) for s in redis_spans(spans))
    trace_ids = {s.context.trace_id for s in spans.get_finished_spans() if s.context}
    assert len(trace_ids) == 1


async def test_async_loader_spans_follow_each_tasks_context(
    redis_url: str, spans: InMemorySpanExporter, tracer: trace.Tracer
) -> None:
    cache = Cache.from_url(redis_url, namespace="trace", secret_key="test-secret")
    parents: dict[str, int] = {}

    async def handle(key: str) -> int:
        with tracer.start_as_current_span(f"request {key}") as request:
            parents[key] = span_id(request)

            async def loader() -> int:
                await asyncio.sleep(0.02)  # both loaders run at once, interleaved
                return len(key)

            value: int = await cache.aget_or_set(key, loader, ttl=60)
            return value

    assert list(await asyncio.gather(handle("a"), handle("bb"))) == [1, 2]
    await cache.aclose()

    loads = named(spans, "cachekit.load")
    assert len(loads) == 2
    assert {parent_id(s) for s in loads} == set(parents.values())
    by_parent = {parent_id(s) for s in redis_spans(spans)}
    assert by_parent == set(parents.values())  # every round trip under its own request


def test_loader_error_is_recorded_and_reraised(redis_url: str, spans: InMemorySpanExporter) -> None:
    cache = Cache.from_url(redis_url, namespace="trace", secret_key="test-secret")

    def loader() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        cache.get_or_set("k", loader)
    cache.close()

    [load] = named(spans, "cachekit.load")
    assert load.status.status_code is StatusCode.ERROR
    assert load.status.description == "ValueError: boom"
    assert (load.attributes or {})["error.type"] == "ValueError"
    [event] = load.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "ValueError"
    assert all(s.status.status_code is StatusCode.UNSET for s in redis_spans(spans))


def test_sync_background_refresh_starts_a_new_trace(
    redis_url: str, spans: InMemorySpanExporter, tracer: trace.Tracer
) -> None:
    now = [time.time()]
    cache = Cache.from_url(
        redis_url, namespace="trace", clock=lambda: now[0], secret_key="test-secret"
    )
    cache.set("k", 1, ttl=10, stale_ttl=60)
    now[0] += 11
    with tracer.start_as_current_span("request") as request:
        assert cache.get_or_set("k", lambda: 2, ttl=10, stale_ttl=60) == 1  # stale, refreshes
    wait_for(lambda: named(spans, "cachekit.load"))
    cache.close()
    [load] = named(spans, "cachekit.load")
    # The refresh thread does not inherit the request's context (documented in tracing.py).
    assert load.parent is None
    assert load.context is not None and load.context.trace_id != request.get_span_context().trace_id


async def test_async_background_refresh_stays_in_the_callers_trace(
    redis_url: str, spans: InMemorySpanExporter, tracer: trace.Tracer
) -> None:
    now = [time.time()]
    cache = Cache.from_url(
        redis_url, namespace="trace", clock=lambda: now[0], secret_key="test-secret"
    )
    await cache.aset("k", 1, ttl=10, stale_ttl=60)
    now[0] += 11
    with tracer.start_as_current_span("request") as request:
        assert await cache.aget_or_set("k", lambda: 2, ttl=10, stale_ttl=60) == 1
    for _ in range(300):
        if named(spans, "cachekit.load"):
            break
        await asyncio.sleep(0.01)
    await cache.aclose()
    [load] = named(spans, "cachekit.load")
    assert parent_id(load) == span_id(request)  # the task copied the caller's context


# -- Redis spans ---------------------------------------------------------------------------------
def test_redis_spans_for_a_miss_a_set_and_a_hit(
    redis_server: RedisServer, redis_url: str, spans: InMemorySpanExporter
) -> None:
    cache = Cache.from_url(redis_url, namespace="trace", l1=False, secret_key="test-secret")
    assert cache.get("k") is None
    assert cache.set("k", {"v": 1}, ttl=60)
    assert cache.get("k") == {"v": 1}
    cache.close()

    miss, store, hit = redis_spans(spans)
    assert (miss.name, store.name, hit.name) == ("GET", "PIPELINE", "GET")
    for span in (miss, store, hit):
        assert span.kind is SpanKind.CLIENT
        assert span.status.status_code is StatusCode.UNSET
        attributes = dict(span.attributes or {})
        assert attributes.pop("db.operation.batch.size", 2) == 2  # SET + PUBLISH
        assert attributes == {
            "db.system.name": "redis",
            "db.system": "redis",
            "db.operation.name": span.name,
            "db.namespace": "0",
            "server.address": "127.0.0.1",
            "server.port": redis_server.port,
            "cachekit.namespace": "trace",
        }
    assert "db.operation.batch.size" in (store.attributes or {})
    assert "db.operation.batch.size" not in (hit.attributes or {})


def test_every_operation_is_labelled(redis_url: str, spans: InMemorySpanExporter) -> None:
    cache = Cache.from_url(redis_url, namespace="trace", secret_key="test-secret")
    cache.set_many({"a": 1, "b": 2}, ttl=60, tags=["t"])
    cache.get_many(["a", "b", "c"])
    cache.add("c", 3)
    cache.incr("c")
    cache.touch("a", ttl=60)
    cache.delete_many(["a", "b"])
    cache.invalidate_tags("t")
    cache.clear()
    cache.close()
    names = {s.name for s in redis_spans(spans)}
    assert names <= REDIS_OPERATIONS
    assert names >= {"MGET", "PIPELINE", "EVALSHA", "SET", "SCAN"}
    for span in redis_spans(spans):
        assert (span.attributes or {})["db.operation.name"] == span.name


def test_dead_redis_shows_an_error_span_and_fails_open(
    private_redis: RedisServer, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("CRITICAL", logger="cachekit")  # the outage warning is expected
    cache = Cache.from_url(
        private_redis.url,
        namespace="trace",
        l1=False,
        socket_timeout=0.2,
        breaker_threshold=10,
        secret_key="test-secret",
    )
    cache.set("k", 1)
    private_redis.stop()
    spans.clear()

    assert cache.get("k") is None  # fails open
    assert cache.get_or_set("k", lambda: 5) == 5  # and still loads
    cache.close()

    failed = [s for s in redis_spans(spans) if s.status.status_code is StatusCode.ERROR]
    assert failed, "the failed round trips are on the trace"
    first = failed[0]
    assert first.name == "GET"
    assert (first.attributes or {})["error.type"] == "redis.exceptions.ConnectionError"
    assert [e.name for e in first.events] == ["exception"]
    assert first.end_time is not None
    [load] = named(spans, "cachekit.load")
    assert load.status.status_code is StatusCode.UNSET


def test_no_key_value_or_tag_text_in_any_span(
    private_redis: RedisServer, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("CRITICAL", logger="cachekit")
    secret = "alice@example.com"
    key, tag, value = f"user:{secret}", f"tag:{secret}", {"email": secret}
    cache = Cache.from_url(
        private_redis.url, namespace="trace", breaker_threshold=10, secret_key="test-secret"
    )
    cache.set(key, value, ttl=60, tags=[tag])
    cache.get(key)
    cache.get_many([key, f"{key}:2"])
    cache.get_or_set(f"{key}:3", lambda: value, tags=[tag])
    cache.add(key, value)
    cache.invalidate_tags(tag)
    cache.delete(key)
    private_redis.stop()  # failures record exceptions: their text must not carry keys either
    cache.get(key)
    cache.set(key, value)
    cache.close()

    recorded = spans.get_finished_spans()
    assert any(s.status.status_code is StatusCode.ERROR for s in recorded)
    texts: list[str] = []
    for span in recorded:
        texts += [span.name, str(span.status.description)]
        texts += [json.dumps(dict(span.attributes or {}), default=str)]
        for event in span.events:
            texts += [event.name, json.dumps(dict(event.attributes or {}), default=str)]
    assert not [t for t in texts if secret in t]


# -- tracing off ---------------------------------------------------------------------------------
def test_spans_none_turns_tracing_off(
    redis_url: str, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "SPANS", None)
    cache = Cache.from_url(redis_url, namespace="trace", secret_key="test-secret")
    assert cache.get_or_set("k", lambda: 1) == 1
    with pytest.raises(ZeroDivisionError):
        cache.get_or_set("boom", lambda: 1 / 0)
    cache.close()
    assert spans.get_finished_spans() == ()


def run_python(code: str, redis_url: str) -> str:
    script = textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url}
    env.pop("OTEL_PYTHON_TRACER_PROVIDER", None)
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_opentelemetry_api(redis_url: str) -> None:
    out = run_python(
        """
        import os, sys
        sys.modules["opentelemetry"] = None  # as if the package were not installed
        from cachekit_core import Cache, tracing
        assert tracing.SPANS is None
        cache = Cache.from_url(os.environ["REDIS_URL"], namespace="plain", secret_key="test-secret")
        assert cache.get_or_set("k", lambda: 1) == 1
        assert cache.get("k") == 1
        try:
            cache.get_or_set("e", lambda: 1 / 0)
        except ZeroDivisionError:
            print("ok")
        cache.close()
        """,
        redis_url,
    )
    assert out.split() == ["ok"]


def test_api_without_sdk_then_sdk_configured_late(redis_url: str) -> None:
    out = run_python(
        """
        import os
        from opentelemetry import trace
        from cachekit_core import Cache, tracing

        cache = Cache.from_url(
            os.environ["REDIS_URL"], namespace="late", l1=False, secret_key="test-secret"
        )
        seen = []
        def loader():
            seen.append(trace.get_current_span().is_recording())
            return 1
        assert cache.get_or_set("k", loader) == 1  # no SDK: no-op spans, nothing breaks
        try:
            cache.get_or_set("e", lambda: 1 / 0)
        except ZeroDivisionError:
            pass
        assert seen == [False]

        # The app installs its SDK only now, after cachekit ran without one: spans start
        # within a second, or at once after recheck().
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        tracing.SPANS.recheck()
        assert cache.get_or_set("k2", loader) == 1
        assert seen == [False, True]
        print(sorted({s.name for s in exporter.get_finished_spans()}))
        print(exporter.get_finished_spans()[0].instrumentation_scope.name)
        cache.close()
        """,
        redis_url,
    )
    names, scope = out.splitlines()
    assert names == "['EVALSHA', 'GET', 'PIPELINE', 'SET', 'cachekit.load']"
    assert scope == "cachekit"
