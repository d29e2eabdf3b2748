"""``Permits``: at most ``max_connections`` asyncio Redis calls in flight per event loop.

redis-py's asyncio pool raises as soon as a call needs connection ``max_connections + 1``: under
a burst of writes that counted as an outage and opened the breaker. Its blocking pool waits
instead, but costs a task and a timeout per command (measured: +25 % on an L2 hit). So calls
take a permit of a per-loop semaphore first, which costs next to nothing while permits are
free; a call that finds none waits for one, at most a socket timeout (then the layer is as
good as unavailable: a timeout, as far as the breaker is concerned).

Sync clients use redis-py's blocking pool, whose uncontended cost is a lock: the sync twins
``acquire``/``release`` (what the generated sync I/O calls) do nothing.
"""

from __future__ import annotations

import asyncio

from .._loops import PerLoop


class Permits:
    __slots__ = ("_loops", "size", "timeout")

    def __init__(self, size: int | None, timeout: float | None) -> None:
        self.size = size
        self.timeout = timeout
        self._loops: PerLoop[asyncio.Semaphore] | None = (
            PerLoop(lambda: asyncio.Semaphore(size)) if size else None
        )

    async def aacquire(self) -> asyncio.Semaphore | None:
        """Take a permit; the semaphore to give it back to (None: no limit). Raises
        TimeoutError when none was free within the timeout."""
        if self._loops is None:
            return None
        permits = self._loops.get()
        if permits.locked():
            async with asyncio.timeout(self.timeout):
                await permits.acquire()
        else:
            await permits.acquire()  # free: returns without yielding
        return permits

    def acquire(self) -> asyncio.Semaphore | None:
        return None

    def clear(self) -> None:
        if self._loops is not None:
            self._loops.clear()
