"""At most ``max_connections`` Redis calls in flight per event loop (asyncio only).

redis-py's asyncio pool raises as soon as a call needs connection ``max_connections + 1``: under
a burst of writes that counted as an outage and opened the breaker. Its blocking pool waits
instead, but costs a task and a timeout per command (measured: +25 % on an L2 hit). So calls
take a permit of a per-loop semaphore first, which costs next to nothing while permits are
free; a call that finds none waits for one, at most a socket timeout (then the layer is as
good as unavailable: a timeout, as far as the breaker is concerned). The sync twin uses
redis-py's blocking pool, whose uncontended cost is a lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from .._async.redis_io import AsyncRedisOps
from ._redis_base import AsyncOp

T = TypeVar("T")


class ConnectionLimit(AsyncRedisOps):
    async def _arun(
        self,
        op: AsyncOp[T],
        lost: Callable[[], None] | None = None,
        operation: str = "",
        batch: int = 0,
    ) -> T | None:
        permits = self._permits()
        if permits is None or self.breaker._open_until:  # open: skipped or a lone probe
            return await AsyncRedisOps._arun(self, op, lost, operation, batch)
        if permits.locked():
            try:
                async with asyncio.timeout(self.socket_timeout):
                    await permits.acquire()
            except TimeoutError:
                if lost is not None:
                    lost()
                self._failed(TimeoutError(f"no free connection in {self.socket_timeout} s"))
                return None
        else:
            await permits.acquire()  # free: returns without yielding
        try:
            return await AsyncRedisOps._arun(self, op, lost, operation, batch)
        finally:
            permits.release()

    def _permits(self) -> asyncio.Semaphore | None:
        size = self.options.get("max_connections")
        if not size:
            return None
        loop = asyncio.get_running_loop()
        permits = self._loop_permits.get(loop)
        if permits is None:
            # As with clients (_aclient): forget loops that closed when a new one shows up.
            for dead in [old for old in list(self._loop_permits) if old.is_closed()]:
                self._loop_permits.pop(dead, None)
            permits = self._loop_permits[loop] = asyncio.Semaphore(size)
        return permits
