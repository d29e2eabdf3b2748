"""``Throttle``: at most one log line per interval, so an outage is a line every 10 s, not a
line per request."""

from __future__ import annotations

import time


class Throttle:
    __slots__ = ("_next", "interval")

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._next = 0.0

    def ready(self) -> bool:
        """True at most once per ``interval`` seconds (the caller then logs)."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval
        return True
