"""OpenTelemetry spans for loader calls and Redis round trips.

On whenever opentelemetry-api is importable (``pip install 'cachekit-web[otel]'``); nothing to
configure in cachekit. Spans go to the global tracer provider, so an app may install its SDK
before or after importing cachekit (see ``Spans.on``); without one, no spans are made at all.

- ``cachekit.load`` (INTERNAL): one loader call, current while it runs so the loader's own
  spans (database queries, HTTP calls) nest under it.
- ``GET``, ``MGET``, ``SET``, ``EVALSHA``, ``PIPELINE``, ``SCAN`` (CLIENT): one Redis
  operation, with the database semantic conventions (``db.system.name``, ``db.operation.name``,
  ``db.namespace``, ``server.address``, ``server.port``) and ``cachekit.namespace``. A failed
  call is recorded on its span even though the cache itself fails open.

Keys and values are never recorded: they may hold personal data. Spans nest under the caller's
current span (contextvars): asyncio tasks, including background refreshes, inherit it; the sync
engine's refresh threads do not, so a sync background refresh starts a new trace.

``SPANS`` is None when opentelemetry-api is missing: callers test it before anything else, so
the cost without OpenTelemetry is that one check. Setting it to None turns tracing off.
"""

from __future__ import annotations

import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

from ._version import __version__

if TYPE_CHECKING:
    from contextvars import Token
    from types import TracebackType

    from opentelemetry.context.context import Context
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.util.types import AttributeValue

    from .keys import KeySpace

__all__ = ["SPANS", "Spans"]

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace

    CLIENT, INTERNAL = otel_trace.SpanKind.CLIENT, otel_trace.SpanKind.INTERNAL
except ImportError:  # the otel extra is not installed: SPANS stays None
    otel_trace = None  # type: ignore[assignment]

TRACER_NAME = "cachekit"


class Deployment(Protocol):
    """Which servers a layer talks to (``layers.topology.Topology`` is one)."""

    @property
    def kind(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def master_options(self) -> dict[str, Any]: ...


class RedisTarget(Protocol):
    """What a Redis span says of the layer it was made for (``RedisLayer`` is one)."""

    url: str
    options: dict[str, Any]

    @property
    def topology(self) -> Deployment: ...

    @property
    def ks(self) -> KeySpace: ...


RECHECK_SECONDS = 1.0


class Spans:
    """Starts cachekit's spans on the global tracer provider's ``cachekit`` tracer."""

    __slots__ = ("_attributes", "_recheck_at", "_sdk", "_tracer")

    def __init__(self) -> None:
        self._tracer: Tracer | None = None
        self._sdk = False
        self._recheck_at = 0.0
        # Per (url, namespace, operation): the fixed attributes of a Redis span, built once.
        self._attributes: dict[tuple[str, str, str], dict[str, AttributeValue]] = {}

    def on(self) -> bool:
        """Whether an SDK (a real tracer provider) is installed.

        Without one every span would be the API's no-op span, which still costs several
        microseconds of CPU per Redis call (measured: about 10 % of an L2 hit here). So until
        a provider is installed cachekit makes no spans, and looks again at most once a
        second: an SDK configured after start-up is picked up within a second (at once after
        ``recheck()``). The global provider can be set only once, so once on, always on.
        """
        if self._sdk:
            return True
        now = time.monotonic()
        if now < self._recheck_at:
            return False
        self._recheck_at = now + RECHECK_SECONDS
        provider = otel_trace.get_tracer_provider()
        self._sdk = not isinstance(provider, otel_trace.ProxyTracerProvider)
        return self._sdk

    def recheck(self) -> None:
        """Look for a tracer provider on the next call (after configuring the SDK late)."""
        self._recheck_at = 0.0

    def _resolve(self) -> Tracer:
        # Before the app installs a provider this is the API's proxy tracer, which switches
        # to the real one as soon as there is one.
        self._tracer = otel_trace.get_tracer(TRACER_NAME, __version__)
        return self._tracer

    def redis(self, layer: RedisTarget, operation: str, batch: int = 0) -> SpanScope:
        """A CLIENT span for one Redis operation (``batch``: commands in a pipeline)."""
        key = (layer.url, layer.ks.namespace, operation)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = self._attributes[key] = _redis_attributes(layer, key[1], operation)
        tracer = self._tracer or self._resolve()
        span = tracer.start_span(operation, kind=CLIENT, attributes=attributes)
        if batch:
            span.set_attribute("db.operation.batch.size", batch)
        return SpanScope(span)

    def load(self, namespace: str) -> SpanScope:
        """The INTERNAL ``cachekit.load`` span, current for the duration of the loader."""
        tracer = self._tracer or self._resolve()
        attributes = {"cachekit.namespace": namespace}
        span = tracer.start_span("cachekit.load", kind=INTERNAL, attributes=attributes)
        return SpanScope(span, current=True)


class SpanScope:
    """Ends its span on exit, recording the error if the block raised; with ``current``, the
    span is also the current one inside the block (so spans started there nest under it)."""

    __slots__ = ("_token", "current", "span")

    def __init__(self, span: Span, *, current: bool = False) -> None:
        self.span = span
        self.current = current
        self._token: Token[Context] | None = None

    def __enter__(self) -> Span:
        if self.current:
            self._token = otel_context.attach(otel_trace.set_span_in_context(self.span))
        return self.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
        if exc is not None:
            _record(self.span, exc)
        self.span.end()


def _record(span: Span, exc: BaseException) -> None:
    # Only Exceptions are failures: a cancelled task or an exiting thread is not (as in the
    # API's own use_span).
    if isinstance(exc, Exception) and span.is_recording():
        cls = type(exc)
        qualified = cls.__qualname__
        if cls.__module__ != "builtins":
            qualified = f"{cls.__module__}.{qualified}"
        span.record_exception(exc, escaped=True)
        span.set_attribute("error.type", qualified)
        span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, f"{cls.__name__}: {exc}"))


def _redis_attributes(
    layer: RedisTarget, namespace: str, operation: str
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "db.system.name": "redis",
        "db.system": "redis",  # the pre-1.26 name, which many backends still group by
        "db.operation.name": operation,
        "cachekit.namespace": namespace,
    }
    topology = layer.topology
    if topology.kind == "sentinel":
        # The master is whichever server the Sentinels name at the time: no fixed address.
        attributes["db.namespace"] = str(topology.master_options.get("db", 0))
        return attributes
    if topology.kind == "cluster":
        # The node depends on the key's slot; the URL only names the seed node.
        attributes["db.namespace"] = "0"
        return attributes
    parts = urlsplit(topology.url)
    # The database index as redis-py picks it: ?db=, then the URL path, then the db option.
    query = parse_qs(parts.query)
    db = query["db"][0] if "db" in query else ""
    if parts.scheme == "unix":
        if parts.path:
            attributes["server.address"] = parts.path
    else:
        db = db or parts.path.strip("/")
        if parts.hostname:
            attributes["server.address"] = parts.hostname
        with suppress(ValueError):  # a malformed port: redis-py reports it, a span need not
            attributes["server.port"] = parts.port or 6379
    attributes["db.namespace"] = str(db or layer.options.get("db", 0))
    return attributes


SPANS: Spans | None = None if otel_trace is None else Spans()
