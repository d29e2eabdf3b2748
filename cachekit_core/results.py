"""What the engine answers: a read's outcome and a tag snapshot (plain data, no I/O).

A lookup says *hit*, *miss* or *unavailable*, so that a caller can tell "not there" from
"could not ask" without diffing counters or building a second engine that raises.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from .entry import Entry

__all__ = [
    "HIT",
    "MISS",
    "READ_MISS",
    "READ_UNAVAILABLE",
    "UNAVAILABLE",
    "UNTAGGED",
    "Read",
    "ReadStatus",
    "TagSnapshot",
    "now_us",
]


class ReadStatus(enum.Enum):
    HIT = "hit"  # an entry was found (fresh, or stale but still servable)
    MISS = "miss"  # every layer was asked: nothing usable
    UNAVAILABLE = "unavailable"  # the shared layer could not be asked (an L1 copy may be given)


class Read:
    """The outcome of ``Cache.read``: ``entry`` is set on HIT, and may be set on UNAVAILABLE
    (the in-process copy, served while Redis is away). A plain class, not a dataclass: one is
    made per read, on the hot path."""

    __slots__ = ("entry", "status")

    def __init__(self, status: ReadStatus, entry: Entry | None = None) -> None:
        self.status = status
        self.entry = entry

    @property
    def found(self) -> bool:
        return self.entry is not None

    @property
    def value(self) -> Any:
        return None if self.entry is None else self.entry.value

    def is_fresh(self, now: float) -> bool:
        return self.entry is not None and now < self.entry.fresh_until

    def __repr__(self) -> str:
        return f"<Read {self.status.value}{'' if self.entry is None else ' with entry'}>"


HIT, MISS, UNAVAILABLE = ReadStatus.HIT, ReadStatus.MISS, ReadStatus.UNAVAILABLE
# The entry-less outcomes, made once (treat reads as read-only).
READ_MISS = Read(MISS)
READ_UNAVAILABLE = Read(UNAVAILABLE)


def now_us() -> int:
    """The wall clock in microseconds: what tag versions, tombstones and snapshots are made of
    (``max(v + 1, now_us())``), so a snapshot time compares with all of them."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class TagSnapshot:
    """Taken *before* a value is computed: a value written with it is never kept if one of its
    tags or its key is invalidated after ``since`` (no stale write-back race).

    ``gens``: this process's generations (L1); ``versions``: Redis's, or None when Redis could
    not be asked (the write then only invalidates what Redis holds). ``since``: when the
    computation started (``now_us``; 0: an unconditional write, as ``set`` makes): a key
    deleted after it refuses the value. ``stale``: a tag was already invalidated after
    ``since`` when the snapshot was taken (e.g. while a request's dependencies ran, before
    its view was bound): the value is not stored at all.
    """

    tag_keys: tuple[str, ...] = ()
    gens: tuple[int, ...] = ()
    versions: list[int] | None = field(default_factory=list)
    since: int = 0
    stale: bool = False


UNTAGGED = TagSnapshot()
