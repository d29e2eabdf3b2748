"""Per-transaction invalidation buffers, shared by the ORM adapters (no I/O, no framework).

A write made inside a database transaction must invalidate its cache tags only once the
transaction commits: invalidating earlier lets a reader re-cache the old row before the commit
makes the new one visible, and invalidating on a rollback throws away good entries. The buffer
mirrors the transaction's shape (as cacheops' transaction state does):

- ``begin()`` opens the outermost level; ``add()`` records tags in the innermost level;
- ``savepoint()`` opens a nested level; ``release_savepoint()`` merges it into its parent,
  ``rollback_savepoint()`` discards it (and only it);
- ``commit()`` returns every tag still recorded and empties the buffer; ``rollback()`` discards.

The buffer is not thread-safe: like the ORM session or connection that owns it, it belongs to
one thread (or task) at a time.
"""

from __future__ import annotations

__all__ = ["InvalidationBuffer"]


class InvalidationBuffer:
    """Collect cache tags for one transaction and its savepoints; hand them over on commit."""

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        # One set per open level: [outermost transaction, savepoint 1, savepoint 2, ...].
        self._levels: list[set[str]] = []

    @property
    def active(self) -> bool:
        """Whether a transaction is open."""
        return bool(self._levels)

    @property
    def depth(self) -> int:
        """Open levels: 0 outside a transaction, 1 in it, one more per open savepoint."""
        return len(self._levels)

    def begin(self) -> None:
        """Open the outermost transaction level."""
        if self._levels:
            raise RuntimeError("a transaction is already open in this buffer")
        self._levels.append(set())

    def add(self, *tags: str) -> None:
        """Record ``tags`` in the innermost open level."""
        if not self._levels:
            raise RuntimeError("add() needs an open transaction: call begin() first")
        for tag in tags:
            if not isinstance(tag, str):
                # A bare list would otherwise be stored as one unhashable "tag" much later.
                raise TypeError(f"tags must be strings, got {type(tag).__name__}")
        self._levels[-1].update(tags)

    def savepoint(self) -> None:
        """Open a nested level (a SAVEPOINT)."""
        if not self._levels:
            raise RuntimeError("a savepoint needs an open transaction: call begin() first")
        self._levels.append(set())

    def release_savepoint(self) -> None:
        """Close the innermost savepoint, keeping its tags: they now belong to its parent."""
        self._require_savepoint()
        released = self._levels.pop()
        self._levels[-1] |= released

    def rollback_savepoint(self) -> None:
        """Close the innermost savepoint and forget its tags (its writes were undone)."""
        self._require_savepoint()
        self._levels.pop()

    def commit(self) -> set[str]:
        """Close the transaction; return the tags to invalidate now that its writes are visible.

        Savepoints still open are committed with it, as the database does.
        """
        if not self._levels:
            raise RuntimeError("commit() without an open transaction")
        tags: set[str] = set()
        for level in self._levels:
            tags |= level
        self._levels.clear()
        return tags

    def rollback(self) -> None:
        """Close the transaction and forget every tag (nothing it wrote became visible).

        Does nothing outside a transaction, so it is safe in cleanup paths.
        """
        self._levels.clear()

    def pending(self) -> frozenset[str]:
        """Tags recorded so far in every open level (e.g. to also invalidate them at once)."""
        tags: set[str] = set()
        for level in self._levels:
            tags |= level
        return frozenset(tags)

    def _require_savepoint(self) -> None:
        if len(self._levels) < 2:
            raise RuntimeError("no savepoint is open")

    def __repr__(self) -> str:
        return f"<InvalidationBuffer depth={self.depth} pending={len(self.pending())}>"
