"""The shared L2 on redis-py (hiredis parser when installed), sync and ``redis.asyncio``."""

from __future__ import annotations

import asyncio

from .._sync.redis_io import SyncRedisOps
from ._async_limit import ConnectionLimit
from ._read_batch import BatchedReads


class RedisLayer(SyncRedisOps, BatchedReads, ConnectionLimit):
    """``RedisLayer(url, socket_timeout=0.25, ...)``: no I/O until first use.

    Every call is bounded by ``socket_timeout`` and goes through a circuit breaker: after
    ``breaker_threshold`` failures (or one timeout) the layer is skipped for
    ``breaker_cooldown`` seconds, then probed again. Extra keywords go to redis-py.
    Concurrent asyncio reads share round trips (``_read_batch.py``); sync reads go alone.
    """

    def on_resubscribe(self) -> None:
        if self.pending:
            self._run(_noop)  # pushes the pending invalidations first

    def close(self) -> None:
        self.stop_listener()
        client, self._client_obj = self._client_obj, None
        if client is not None:
            self.topology.close(client)

    async def aclose(self) -> None:
        self.stop_listener()
        loop = asyncio.get_running_loop()
        client = self._aclients.pop(loop, None)
        if loop is self._last_loop:
            self._last_loop = self._last_aclient = None
        if client is not None:
            await self.topology.aclose(client)


def _noop(client: object) -> None:
    return None
