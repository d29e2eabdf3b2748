"""Circuit breaker for one shared layer: closed -> open (skip the layer) -> half-open probe."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(
        self,
        threshold: int = 3,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self.open_until = 0.0  # 0.0 means closed: hot paths check this one attribute
        self._probe_started = 0.0
        self.opened = 0  # how many times it opened (a metric)
        self.opened_at = 0.0  # wall-clock time it last opened (0: never)

    @property
    def state(self) -> str:
        if not self.open_until:
            return "closed"
        return "open" if self._clock() < self.open_until else "half-open"

    def allow(self) -> bool:
        """Whether a call may go to the layer now (one probe at a time once the cooldown ends)."""
        if not self.open_until:
            return True
        now = self._clock()
        if now < self.open_until:
            return False
        with self._lock:
            # A probe that never reported back (its thread died) is replaced after a cooldown.
            if self._probe_started and now - self._probe_started < self.cooldown:
                return False
            self._probe_started = now
            return True

    def success(self) -> None:
        if self._failures or self.open_until:
            with self._lock:
                self._failures = 0
                self.open_until = 0.0
                self._probe_started = 0.0

    def failure(self, *, timeout: bool = False) -> None:
        """Record a failed call; a timeout opens at once, since each one costs a full wait."""
        with self._lock:
            self._failures += 1
            if timeout or self._failures >= self.threshold or self._probe_started:
                if not self.open_until or self._probe_started:
                    self.opened += 1
                    self.opened_at = time.time()
                self.open_until = self._clock() + self.cooldown
                self._probe_started = 0.0
