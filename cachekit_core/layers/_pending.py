"""Invalidations that could not reach Redis, replayed before the layer's next successful call.

Two kinds, kept apart because only one of them may ever be over-approximated:

- the data cache's own (tag bumps, entry keys, a ``clear()``): past ``LIMIT`` of them the
  queue collapses into "delete every *entry* of the namespace", which is always safe for a
  cache: entries are copies of data that lives elsewhere;
- deletes of records (sessions: data that lives nowhere else, e.g. a logout made during the
  outage). These are never collapsed into anything wider, and nothing else ever deletes a
  record: past ``RECORD_LIMIT`` further ones are refused (counted in ``refused``) and the
  caller is told it failed, as for any delete that did not reach Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class Pending:
    __slots__ = ("any", "clear", "keys", "records", "refused", "tags")

    LIMIT = 10_000
    RECORD_LIMIT = 100_000

    def __init__(self) -> None:
        self.tags: set[str] = set()
        self.keys: dict[str, str] = {}  # redis entry key -> user key (for the broadcast)
        self.records: set[str] = set()  # redis record keys to delete
        # Delete every entry of the namespace (a failed clear(), or too much to track):
        # entries only, never records, streams, tag versions or tombstones.
        self.clear = False
        self.refused = 0  # record deletes refused because RECORD_LIMIT was reached
        self.any = False  # checked on every call: a plain attribute, not a computed one

    def __bool__(self) -> bool:
        return self.any

    def __len__(self) -> int:
        return len(self.tags) + len(self.keys) + len(self.records) + int(self.clear)

    def add(
        self,
        tags: Iterable[str] = (),
        keys: Mapping[str, str] | None = None,
        clear: bool = False,
        records: Iterable[str] = (),
    ) -> bool:
        """Queue these; False if a record delete could not be queued (RECORD_LIMIT)."""
        queued = True
        for key in records:
            if key in self.records:
                continue
            if len(self.records) >= self.RECORD_LIMIT:
                self.refused += 1
                queued = False
                continue
            self.records.add(key)
            self.any = True
        if clear:
            self.overflowed()
            return queued
        if self.clear:  # every entry goes anyway: tracking more of them is pointless
            return queued
        self.tags.update(tags)
        self.keys.update(keys or {})
        if self.tags or self.keys:
            self.any = True
        if len(self.tags) + len(self.keys) > self.LIMIT:
            self.overflowed()
        return queued

    def merge(self, other: Pending) -> None:
        """Take back what a replay could not deliver."""
        self.add(other.tags, other.keys, other.clear, other.records)

    def overflowed(self) -> None:
        # Too much to replay one by one: deleting every entry of the namespace is the safe
        # over-approximation for a cache. Records are kept, one by one, whatever happens.
        self.tags.clear()
        self.keys.clear()
        self.clear = self.any = True
