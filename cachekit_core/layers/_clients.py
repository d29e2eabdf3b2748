"""``Clients``: the redis-py clients of one Redis layer, made lazily (no I/O in constructors).

One sync client (its pool is thread-safe) and one asyncio client per event loop (an asyncio
client's connections belong to the loop that opened them).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .._loops import PerLoop
from .topology import Topology

if TYPE_CHECKING:
    import redis
    import redis.asyncio


class Clients:
    def __init__(self, topology: Topology, options: dict[str, Any]) -> None:
        self.topology = topology
        self.options = options
        self._sync: redis.Redis | None = None
        self._lock = threading.Lock()
        self._async: PerLoop[redis.asyncio.Redis] = PerLoop(
            lambda: topology.async_client(self.options)
        )

    def new(self, **overrides: Any) -> redis.Redis:
        """A sync client of its own (the listener's, a worker's), with ``overrides``."""
        return self.topology.sync_client({**self.options, **overrides})

    def anew(self, **overrides: Any) -> redis.asyncio.Redis:
        return self.topology.async_client({**self.options, **overrides})

    def sync(self) -> redis.Redis:
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    self._sync = self.new()
                client = self._sync
        return client

    def for_loop(self) -> redis.asyncio.Redis:
        """The running event loop's client."""
        return self._async.get()

    def close(self) -> None:
        client, self._sync = self._sync, None
        if client is not None:
            self.topology.close(client)

    async def aclose(self) -> None:
        """Close the running loop's client (other loops close theirs)."""
        client = self._async.pop()
        if client is not None:
            await self.topology.aclose(client)

    @property
    def sync_open(self) -> bool:
        return self._sync is not None
