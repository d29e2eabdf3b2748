"""``Health``: how one Redis layer is doing. Holds its circuit breaker, counts failures,
timeouts, slow calls and skipped calls, logs them (rate-limited), and raises
``CacheUnavailable`` instead of failing open when the cache asked for that."""

from __future__ import annotations

import logging
import math
from typing import Any

from .._breaker import CircuitBreaker
from ..exceptions import CacheUnavailable
from ..throttle import Throttle

log = logging.getLogger("cachekit.redis")


class Health:
    __slots__ = (
        "breaker",
        "errors",
        "namespace",
        "raise_on_error",
        "safe_url",
        "skipped",
        "slow_call",
        "slow_calls",
        "throttle",
        "timeouts",
    )

    def __init__(self, breaker: CircuitBreaker, slow_call: float | None, safe_url: str) -> None:
        self.breaker = breaker
        # A call that succeeds but takes longer than this counts as a failure: a Redis that
        # answers just under the timeout would otherwise slow every request without ever
        # tripping the breaker (several round trips per request add up).
        self.slow_call = slow_call if slow_call is not None else math.inf
        self.safe_url = safe_url
        self.namespace = "?"
        self.raise_on_error = False
        self.errors = self.timeouts = self.slow_calls = self.skipped = 0
        self.throttle = Throttle()  # an outage is one line per 10 s

    def skipped_call(self) -> None:
        """A call not made because the breaker is open."""
        self.skipped += 1
        if self.raise_on_error:
            raise CacheUnavailable(f"Redis at {self.safe_url} is unavailable (circuit open)")

    def failed(self, exc: BaseException) -> None:
        import redis.exceptions as rex

        self.errors += 1
        # A server's answer is not an outage, but a cluster with uncovered slots is.
        if not isinstance(exc, rex.ResponseError) or isinstance(exc, rex.ClusterError):
            timeout = isinstance(exc, rex.TimeoutError | TimeoutError)
            self.timeouts += timeout
            self.breaker.failure(timeout=timeout)
        if self.throttle.ready():
            log.warning(
                "cachekit: Redis call failed (namespace=%s, circuit=%s): %s: %s",
                self.namespace,
                self.breaker.state,
                type(exc).__name__,
                exc,
            )
        if self.raise_on_error:
            raise CacheUnavailable(f"Redis at {self.safe_url} failed: {exc}") from exc

    def slow(self, seconds: float) -> None:
        self.slow_calls += 1
        self.breaker.failure()
        if self.throttle.ready():
            log.warning(
                "cachekit: Redis answered in %.0f ms, over slow_call=%.0f ms (namespace=%s, "
                "circuit=%s)",
                seconds * 1000,
                self.slow_call * 1000,
                self.namespace,
                self.breaker.state,
            )

    def stats(self) -> dict[str, Any]:
        breaker = self.breaker
        return {
            "errors": self.errors,
            "skipped": self.skipped,
            "circuit": breaker.state,
            "circuit_opened": breaker.opened,
            "circuit_opened_at": breaker.opened_at,
            "timeouts": self.timeouts,
            "slow_calls": self.slow_calls,
        }
