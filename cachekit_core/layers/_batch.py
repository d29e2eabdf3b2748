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

A batch is one call of the layer's ``send`` (one ``_arun``): one breaker outcome, one span, one
replay of pending invalidations. Its callers get what a single read would have: their rows, or
None when Redis is unavailable (the exception of ``raise_on_error``, if set). A batch only
starts after its callers queued, so it never misses a write or an invalidation that completed
before they read.

The batcher is a part the layer holds. Its sync ``read`` (what the generated sync I/O calls)
just makes the direct read: a thread cannot wait for other threads' reads for free.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable

from .._breaker import CircuitBreaker
from .._loops import PerLoop
from .base import Row

__all__ = ["MAX_KEYS", "LoopReads", "ReadBatcher"]

MAX_KEYS = 256  # per batch (entry and tag keys): one huge MGET would stall Redis and the queue

# A queued read: the keys it wants (an entry and its tag keys, or tag keys alone), the caller's
# future for their values, and the caller's context.
_Read = tuple[tuple[str, ...], asyncio.Future[Row | None], contextvars.Context]
AsyncDirect = Callable[[str | None, tuple[str, ...]], Awaitable[Row | None]]
SyncDirect = Callable[[str | None, tuple[str, ...]], Row | None]


class LoopReads:
    """One event loop's turn: whether reads are in flight, and the reads waiting for them."""

    __slots__ = ("busy", "queue", "task")

    def __init__(self) -> None:
        self.busy = False
        self.queue: deque[_Read] = deque()
        self.task: asyncio.Task[None] | None = None  # the loop holds tasks weakly: we hold it


class ReadBatcher:
    """Lets the single reads of one event loop take turns; see the module docstring.

    ``send(keys)``: the values of ``keys`` in one round trip, None when unavailable.
    """

    __slots__ = ("_loops", "breaker", "enabled", "max_keys", "send")

    def __init__(
        self, send: Callable[[list[str]], Awaitable[Row | None]], breaker: CircuitBreaker
    ) -> None:
        self.send = send
        self.breaker = breaker
        self.enabled = True  # False: every read goes alone, as before batching
        self.max_keys = MAX_KEYS
        self._loops: PerLoop[LoopReads] = PerLoop(LoopReads)

    def read(self, direct: SyncDirect, key: str | None, tag_keys: tuple[str, ...]) -> Row | None:
        return direct(key, tag_keys)

    async def aread(
        self, direct: AsyncDirect, key: str | None, tag_keys: tuple[str, ...]
    ) -> Row | None:
        """``direct(key, tag_keys)`` when nothing is in flight, else a place in the next batch.
        A row is the values of the entry key (when given) and of the tag keys, in order."""
        # Unless the breaker is closed, each read skips or probes on its own: queued behind
        # a probe, reads would wait on a Redis that is likely down.
        if not self.enabled or self.breaker.open_until:
            return await direct(key, tag_keys)
        reads = self._loops.get()
        if reads.busy:
            return await self._aqueue(reads, tag_keys if key is None else (key, *tag_keys))
        reads.busy = True
        try:
            return await direct(key, tag_keys)
        finally:  # also when cancelled or failed: the queue must not wait forever
            self._send_next(reads)

    def loop_reads(self) -> LoopReads:
        """The running loop's turn (for tests and introspection)."""
        return self._loops.get()

    def clear(self) -> None:
        self._loops.clear()

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
            if batch and size + len(read[0]) > self.max_keys:
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
        values = await self.send(list(position))
        if values is None:
            return None
        return [[values[position[key]] for key in keys] for keys in wanted]
