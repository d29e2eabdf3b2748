"""The engine: the read path, single-flight and locks, stale-while-revalidate, tags and writes,
over an optional in-process L1 and an optional shared L2 (``layers``).

``Engine`` is the public API everything built on the engine uses (the HTTP cache, ``@cached``,
write-behind, sessions, the adapters): every operation has an awaitable twin prefixed with
``a``, written once in ``_async/ops.py`` (``_sync/ops.py`` is generated).
"""

from __future__ import annotations

from ..results import Read, ReadStatus, TagSnapshot
from ._async.ops import AsyncEngineOps
from ._sync.ops import SyncEngineOps

__all__ = ["Engine", "Read", "ReadStatus", "TagSnapshot"]


class Engine(SyncEngineOps, AsyncEngineOps):
    """A layered cache engine (see ``cachekit_core.Cache`` for the user-facing class)."""

    def close(self) -> None:
        """Stop background work and close sync connections."""
        if self._executor is not None:
            # Wait for refreshes already running: one finishing later would fill L1 and
            # restart the listener of a closed cache.
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self.shared is not None:
            self.shared.close()

    async def aclose(self) -> None:
        """Close the connections of the running event loop and stop background work."""
        for task in list(self._tasks):
            task.cancel()
        if self.shared is not None:
            await self.shared.aclose()
        self.close()
