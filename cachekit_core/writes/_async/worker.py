"""Write-behind I/O, written once as async code (the sync twin is generated)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..._concurrency import AsyncEvent, async_call_blocking, async_wait
from ...layers.redis import REDIS_ERRORS
from .._base import (
    WorkerState,
    WriteBehindBase,
    as_str,
    consumer_name,
    is_busygroup,
    stream_entries,
)

if TYPE_CHECKING:
    from ...layers.redis import AsyncRedisClient


class AsyncWriteBehindOps(WriteBehindBase):
    # -- producer ----------------------------------------------------------------------------
    async def asubmit(self, key: str, value: Any) -> str:
        """Append ``(key, value)`` to the stream; returns its id once Redis holds it.

        Raises CacheUnavailable when Redis cannot take it (never silently dropped): the caller
        decides whether to retry or to write synchronously instead.
        """
        fields = self._encode(key, value)
        try:
            entry_id = await self._layer.aclient().xadd(self.stream, fields)  # type: ignore[arg-type]
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from exc
        return as_str(entry_id)

    async def apending(self) -> int:
        """How many submitted entries are not yet flushed (unread or in flight).

        Exact: flushed entries are acknowledged and deleted atomically, so this is XLEN.
        """
        try:
            return int(await self._layer.aclient().xlen(self.stream))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from exc

    # -- worker ------------------------------------------------------------------------------
    async def arun_worker(self, stop: AsyncEvent | None = None) -> None:
        """Flush batches until ``stop`` is set (checked at least every ``interval``); without
        ``stop``, until the process exits (or the task is cancelled). Redis outages and flush
        errors are logged and retried, never raised. Async: ``flush`` may be a plain function
        (run in a thread, so the event loop keeps serving requests) or an async one, and
        cancelling mid-flush acknowledges nothing: the batch is delivered again."""
        stop = AsyncEvent() if stop is None else stop
        state = WorkerState(consumer_name())
        client = self._anew_worker_client()
        try:
            while not stop.is_set():
                try:
                    delay = await self._astep(client, state)
                except REDIS_ERRORS as exc:
                    delay = self._redis_failed(exc, state)
                if delay:
                    await async_wait(stop, delay)
        finally:
            await self._layer.topology.aclose(client)

    async def _astep(self, client: AsyncRedisClient, state: WorkerState) -> float:
        """One read-flush-ack round; returns how long to wait before the next one."""
        if not state.group_ready:
            await _aensure_group(client, self.stream, self.group)
            state.group_ready = True
        entries: list[Any] = []
        if time.monotonic() >= state.next_reclaim:
            reply = await client.xautoclaim(**self._reclaim_args(state))
            entries = self._after_reclaim(state, reply)
        if not entries and state.own_pending:
            # Id 0 reads what this consumer was delivered but never acknowledged: a failed
            # batch, or entries the sweep above just claimed.
            entries = stream_entries(
                await client.xreadgroup(
                    self.group, state.consumer, {self.stream: "0"}, count=self.batch_size
                )
            )
            state.own_pending = bool(entries)
        if not entries:
            entries = stream_entries(
                await client.xreadgroup(
                    self.group,
                    state.consumer,
                    {self.stream: ">"},
                    count=self.batch_size,
                    block=max(1, int(self.interval * 1000)),
                )
            )
        if not entries:
            return 0.0
        batch = self._batch(entries)
        if batch.items:
            try:
                await async_call_blocking(self.flush, batch.items)
            except Exception as exc:
                return self._flush_failed(exc, batch, state)
        # Acknowledge only now that flush returned (at-least-once), and delete in the same
        # transaction so XLEN stays exactly "not yet flushed".
        async with client.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, *batch.ids)
            pipe.xdel(self.stream, *batch.ids)
            await pipe.execute()
        self.flushed += len(batch.items)
        state.retry_delay = 0.0
        return 0.0


async def _aensure_group(client: AsyncRedisClient, stream: str, group: str) -> None:
    import redis

    try:
        # Id 0, not $: entries submitted before any worker ever ran must be delivered too.
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if not is_busygroup(exc):
            raise
