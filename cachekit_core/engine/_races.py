"""What this process invalidated lately, so a value computed before an invalidation is never
kept after it (the in-process half of the race guard; Redis's half is the tombstone a delete
leaves and the tag versions, see ``layers/_shared.py``).

Times are microseconds of the wall clock (``results.now_us``), the clock tag versions and
tombstones are made of, so one snapshot time answers both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class Recent:
    """Names (user keys, or tag keys) with the time each was last invalidated here.

    Bounded: past ``limit`` names, those older than ``window_us`` are forgotten; if that is
    not enough, all are, and ``floor`` (the time of forgetting) stands for every name, so a
    computation that started before it is treated as overtaken: over-cautious, never wrong.
    """

    __slots__ = ("floor", "limit", "lock", "times", "window_us")

    def __init__(self, window_us: int, limit: int = 10_000) -> None:
        self.window_us = window_us
        self.limit = limit
        self.times: dict[str, int] = {}
        self.floor = 0
        self.lock = threading.Lock()

    def note(self, names: Iterable[str], now_us: int) -> None:
        with self.lock:
            times = self.times
            for name in names:
                times[name] = now_us
            if len(times) > self.limit:
                cutoff = now_us - self.window_us
                self.times = {n: t for n, t in times.items() if t > cutoff}
                if len(self.times) > self.limit // 2:
                    self._forget(now_us)

    def reset(self, now_us: int) -> None:
        """Forget every name: anything computed before ``now_us`` counts as overtaken."""
        with self.lock:
            self._forget(now_us)

    def _forget(self, now_us: int) -> None:
        self.times = {}
        self.floor = max(self.floor, now_us)

    def changed_after(self, names: Iterable[str], since: int) -> bool:
        """Whether any of ``names`` was invalidated here after ``since`` (no lock: one read of
        a dict that is only ever replaced or added to)."""
        if self.floor > since:
            return True
        times = self.times
        return any(times.get(name, 0) > since for name in names)
