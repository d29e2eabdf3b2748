"""When a hook's invalidation happens, relative to the transaction that made the write.

A tag is invalidated at once (so this connection's own later reads re-render) *and* again
when the transaction commits (``on_commit``), because a reader on another connection may
re-cache the pre-commit row between the write and the commit. Django drops the commit
callbacks of a rolled-back savepoint. The writing thread itself sees its uncommitted rows, so
while it holds some (``uncommitted_writes()``) the middleware and the template tag render
without storing: after a rollback the cache holds only what the database still holds.

cachekit_core's ``InvalidationBuffer`` models the same states, but Django exposes no savepoint
events to drive it, and ``on_commit`` already tracks them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from cachekit_core import CacheUnavailable

from . import conf

__all__ = ["schedule", "uncommitted_writes"]

log = logging.getLogger("cachekit.django")


class _CommitFlush:
    """An ``on_commit`` callback; writes at the same savepoint level share one."""

    __slots__ = ("real", "tags")

    def __init__(self, tags: set[str], real: bool) -> None:
        self.tags = set(tags)
        self.real = real  # registered inside a transaction of the application's own

    def __call__(self) -> None:
        _invalidate(self.tags, raise_errors=False)


def _in_real_transaction(conn: BaseDatabaseWrapper) -> bool:
    # Django's TestCase wraps each test in atomic blocks that never commit; to the test, a
    # write inside only those is committed.
    return any(not getattr(block, "_from_testcase", False) for block in conn.atomic_blocks)


def uncommitted_writes() -> bool:
    """Whether this thread holds writes (seen by the hooks) in a transaction still open.

    Such a thread reads rows no one else can see yet, and a rollback may never let anyone
    see them: what it renders must not be stored (the middleware and ``{% cachefragment %}``
    then render without storing). This is what leaves no stale entry after a rollback; the
    commit-time invalidation covers the readers on other connections.
    """
    for conn in connections.all(initialized_only=True):
        if _in_real_transaction(conn) and any(
            isinstance(entry[1], _CommitFlush) and entry[1].real for entry in conn.run_on_commit
        ):
            return True
    return False


def _invalidate(tags: Iterable[str], *, raise_errors: bool) -> None:
    tags = sorted(tags)
    if not tags:
        return
    try:
        reached = conf.engine().invalidate_tags(*tags)
    except Exception:
        if raise_errors:
            raise
        # A hook must not break the write; a lost invalidation means stale pages: be loud.
        log.exception("cachekit: invalidating %d tag(s) failed", len(tags))
        return
    if not reached and raise_errors:
        # This process's pages are invalidated and the engine replays the bump once Redis is
        # back (it logged the failure), but other processes may serve the old pages until then:
        # a caller who asked for the invalidation must know. A hook's write goes on.
        raise CacheUnavailable(
            f"Redis could not be reached: {len(tags)} tag(s) invalidated in this process only "
            "until it is back"
        )


def schedule(tags: set[str], using: str | None, *, raise_errors: bool) -> None:
    """Invalidate at once and, inside a transaction, again once it commits."""
    # The commit-time repeat first: it must not be lost when the first attempt raises.
    _repeat_on_commit(tags, using)
    _invalidate(tags, raise_errors=raise_errors)


def _repeat_on_commit(tags: set[str], using: str | None) -> None:
    if not tags or using is None:
        return
    conn = connections[using]
    if not conn.in_atomic_block:
        return  # autocommit: the write is already visible (manual transactions: unhookable)
    sids = tuple(conn.savepoint_ids)
    last: tuple[tuple[str, ...], _CommitFlush] | None = getattr(conn, "_cachekit_flush", None)
    # Reuse the previous callback if it is still pending at this very savepoint level: Django
    # would discard both together on a rollback, so one is as good as two. (After a commit or
    # rollback Django empties run_on_commit, so a stale reference is never reused.)
    real = _in_real_transaction(conn)
    if (
        last is not None
        and last[0] == sids
        and any(entry[1] is last[1] for entry in reversed(conn.run_on_commit))
    ):
        last[1].tags |= tags
        last[1].real = last[1].real or real
        return
    flush = _CommitFlush(tags, real)
    conn.on_commit(flush, robust=True)
    conn._cachekit_flush = (sids, flush)  # type: ignore[attr-defined]
