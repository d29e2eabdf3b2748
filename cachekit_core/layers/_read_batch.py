"""Concurrent single-key reads of one event loop share a round trip (asyncio only).

redis-py's asyncio client spends some 40-50 us of CPU per command, far more than a cache hit
costs otherwise: with many tasks reading at once, sending each read on its own makes that the
bottleneck. So the reads of one event loop (an entry with its tags' versions, or the versions
alone) take turns, as redis.asyncio clients are per loop:

- nothing in flight: the read goes out at once, exactly as before (a lone read waits for
  nothing and is still one GET, or one MGET with its tags);
- a read in flight: the read queues. When the round trip in flight ends, whatever queued goes
  out together in a task of its own (the caller that finished returns at once): one MGET of
  their entry and tag keys, each once (a pipeline of GETs on a cluster), at most ``MAX_KEYS``
  keys. The end of that batch sends the next, until nothing waits.

A batch is one call through ``_arun``: one breaker outcome, one span, one replay of pending
invalidations. Its callers get what a single read would have: their rows, or None when Redis
is unavailable (the exception of ``raise_on_error``, if set). A batch only starts after its
callers queued, so it never misses a write or an invalidation that completed before they read.

The sync twin (``_sync/redis_io.py``) has no batching: it is generated from
``_async/redis_io.py``, which stays the direct read this class falls back on.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from typing import TYPE_CHECKING, cast

from .._async.redis_io import AsyncRedisOps
from ._redis_base import Row

if TYPE_CHECKING:
    from ._redis_base import AsyncRedisClient

__all__ = ["BATCH_READS", "MAX_KEYS", "BatchedReads", "LoopReads"]

BATCH_READS = True  # kill switch: False sends every read on its own, as before
MAX_KEYS = 256  # per batch (entry and tag keys): one huge MGET would stall Redis and the queue

# A queued read: the keys it wants (an entry and its tag keys, or tag keys alone), the caller's
# future for their values, and the caller's context.
_Read = tuple[tuple[str, ...], asyncio.Future[Row | None], contextvars.Context]


class LoopReads:
    """One event loop's turn: whether reads are in flight, and the reads waiting for them."""

    __slots__ = ("busy", "queue", "task")

    def __init__(self) -> None:
        self.busy = False
        self.queue: deque[_Read] = deque()
        self.task: asyncio.Task[None] | None = None  # the loop holds tasks weakly: we hold it


class BatchedReads(AsyncRedisOps):
    """``aread_one`` and ``atag_versions`` (the read path's other single read: a first read of
    a tagged entry fetches its tags' versions) take turns per event loop; see above."""

    async def aread_one(self, key: str, tag_keys: tuple[str, ...]) -> Row | None:
        reads = self._turn()
        if reads is None:
            return await AsyncRedisOps.aread_one(self, key, tag_keys)
        if reads.busy:  # a row is the values of the entry key and its tag keys, in order
            return await self._aqueue(reads, (key, *tag_keys))
        reads.busy = True
        try:
            return await AsyncRedisOps.aread_one(self, key, tag_keys)
        finally:  # also when cancelled or failed: the queue must not wait forever
            self._send_next(reads)

    async def atag_versions(self, tag_keys: list[str]) -> list[int] | None:
        reads = self._turn()
        if reads is None:
            return await AsyncRedisOps.atag_versions(self, tag_keys)
        if reads.busy:
            values = await self._aqueue(reads, tuple(tag_keys))
            return None if values is None else [int(v) if v is not None else 0 for v in values]
        reads.busy = True
        try:
            return await AsyncRedisOps.atag_versions(self, tag_keys)
        finally:
            self._send_next(reads)

    def _turn(self) -> LoopReads | None:
        """This event loop's turn; None when each read goes alone, as before batching."""
        # Unless the breaker is closed, each read skips or probes on its own: queued behind
        # a probe, reads would wait on a Redis that is likely down.
        if not BATCH_READS or self.breaker._open_until:
            return None
        loop = asyncio.get_running_loop()
        reads = self._loop_reads.get(loop)
        if reads is None:
            # As with clients (_aclient): forget loops that closed when a new one shows up.
            for dead in [old for old in list(self._loop_reads) if old.is_closed()]:
                self._loop_reads.pop(dead, None)
            reads = self._loop_reads[loop] = LoopReads()
        return reads

    async def _aqueue(self, reads: LoopReads, keys: tuple[str, ...]) -> Row | None:
        future: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        # The batch runs in its first caller's context: its span joins that caller's trace.
        reads.queue.append((keys, future, contextvars.copy_context()))
        return await future  # a cancelled caller cancels its future: the batch skips it

    def _send_next(self, reads: LoopReads) -> None:
        """At the end of a round trip: send what queued meanwhile, or end the turn."""
        queue, size = reads.queue, 0
        batch: list[_Read] = []
        while queue:
            read = queue[0]
            if batch and size + len(read[0]) > MAX_KEYS:
                break  # the next batch takes it
            queue.popleft()
            if not read[1].done():  # done: cancelled while it queued
                batch.append(read)
                size += len(read[0])
        if batch:
            loop = asyncio.get_running_loop()
            reads.task = loop.create_task(self._abatch(reads, batch), context=batch[0][2])
        else:
            reads.busy, reads.task = False, None

    async def _abatch(self, reads: LoopReads, batch: list[_Read]) -> None:
        rows: list[Row] | None = None
        error: Exception | None = None
        try:
            rows = await self._aread_rows([keys for keys, _, _ in batch])
        except Exception as exc:  # CacheUnavailable under raise_on_error: every caller's
            error = exc
        finally:  # cancelled too: then the callers see None (unavailable) rather than hang
            for i, (_, future, _) in enumerate(batch):
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(None if rows is None else rows[i])
            self._send_next(reads)

    async def _aread_rows(self, wanted: list[tuple[str, ...]]) -> list[Row] | None:
        """The values of each tuple of keys, all in one round trip; None if unavailable."""
        position: dict[str, int] = {}  # each key once, however many callers want it
        for keys in wanted:
            for key in keys:
                position.setdefault(key, len(position))
        unique = list(position)

        async def op(client: AsyncRedisClient) -> Row:
            if self.cluster:  # the keys live in different slots
                return await self._aget_each(client, unique)
            return cast(Row, await client.mget(unique))

        if self.cluster:
            values = await self._arun(op, operation="PIPELINE", batch=len(unique))
        else:
            values = await self._arun(op, operation="MGET")
        if values is None:
            return None
        return [[values[position[key]] for key in keys] for keys in wanted]
