"""Write patterns: write-through and write-behind.

Write-through
    ``cache.write_through(key, value, writer)`` calls ``writer(value)`` first and caches the
    value only once the store has it. If the writer (or the caching) raises, the key is deleted
    from every layer: the store may or may not hold the new value, so neither the new copy nor
    the old one can be trusted.

Write-behind
    ``cache.write_behind(name, flush=...)`` returns a :class:`WriteBehind`. ``submit`` appends
    ``(key, value)`` to the Redis Stream ``<namespace>:s:<name>`` and returns once Redis holds
    it; workers (``run_worker`` / ``arun_worker``, any number, in any process) read it through
    one consumer group and hand batches to ``flush(items)``.

Delivery contract: **at-least-once**.
    An entry is acknowledged (XACK) only after the ``flush`` call that received it returned.
    A flush that raises acknowledges nothing: the batch is retried (with backoff) by the same
    worker. A worker that dies mid-flush leaves its batch pending in the group; any worker
    reclaims entries pending longer than ``min_idle`` seconds (XAUTOCLAIM, at start-up and every
    ``reclaim_interval``) and flushes them again. So no submitted write is lost, but a flush may
    see an item more than once (a batch half-written before a crash, or a flush slower than
    ``min_idle`` whose entries another worker reclaimed). Make ``flush`` idempotent:

    * write with an upsert keyed by the item key (``INSERT ... ON CONFLICT (key) DO UPDATE``,
      ``bulk_update``, ``SET``), not with an append or an increment of a running total;
    * write one batch in one transaction, so a crash leaves all or nothing of it;
    * when items are deltas (``{"views": 1}``), put a unique id in the value and record applied
      ids in the same transaction, or submit absolute values instead.

    Items of one key are delivered in submission order within a batch, but a redelivered older
    batch can arrive after a newer one: if order matters, carry a version or timestamp in the
    value and keep the newest (``... DO UPDATE ... WHERE excluded.version > version``).

Durability: an entry is as durable as Redis is (``appendonly yes`` with ``appendfsync always``
or ``everysec`` for crash safety of the Redis host itself).

Trimming: after a successful flush its entries are acknowledged *and* deleted (XACK + XDEL in
one MULTI), so the stream holds exactly the entries not yet flushed (unread or in flight) and
``pending()`` is its XLEN. Nothing is ever trimmed by length or age (no MAXLEN/MINID): XDEL
only touches ids that were just acknowledged, so an unacknowledged entry can never be dropped,
however many workers run or however far behind they are. XTRIM MINID would need the oldest
pending id of every group, read in a separate call that a concurrent reader can invalidate.

Integrity: values are msgpack-encoded; when the cache has a ``secret_key`` every entry carries
an HMAC-SHA256 over the stream name and the payload, verified before decoding. An entry that
fails (unsigned, forged, undecodable) is logged, counted (``cache.stats()["corrupt"]`` and
``WriteBehind.rejected``), acknowledged and deleted, and never passed to ``flush``.
"""

from __future__ import annotations

from ._async.through import awrite_through
from ._async.worker import AsyncWriteBehindOps
from ._base import FlushFn, Item
from ._sync.through import write_through
from ._sync.worker import SyncWriteBehindOps

__all__ = ["FlushFn", "Item", "WriteBehind", "awrite_through", "write_through"]


class WriteBehind(SyncWriteBehindOps, AsyncWriteBehindOps):
    """A durable write-behind queue on a Redis Stream; see the module docstring for the
    at-least-once contract. Build it with ``cache.write_behind(name, flush=...)``."""

    def __repr__(self) -> str:
        return f"<WriteBehind stream={self.stream!r} group={self.group!r}>"
