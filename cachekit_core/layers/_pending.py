"""Invalidations that could not reach Redis, replayed before the layer's next successful call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class Pending:
    __slots__ = ("any", "clear", "keys", "tags")

    LIMIT = 10_000

    def __init__(self) -> None:
        self.tags: set[str] = set()
        self.keys: dict[str, str] = {}  # redis entry key -> user key (for the broadcast)
        self.clear = False
        self.any = False  # checked on every call: a plain attribute, not a computed one

    def __bool__(self) -> bool:
        return self.any

    def __len__(self) -> int:
        return len(self.tags) + len(self.keys) + int(self.clear)

    def add(
        self, tags: Iterable[str] = (), keys: Mapping[str, str] | None = None, clear: bool = False
    ) -> None:
        if clear:
            self.overflowed()
            return
        self.tags.update(tags)
        self.keys.update(keys or {})
        self.any = True
        if len(self.tags) + len(self.keys) > self.LIMIT:
            self.overflowed()

    def merge(self, other: Pending) -> None:
        """Take back what a replay could not deliver."""
        self.add(other.tags, other.keys, other.clear)

    def overflowed(self) -> None:
        # Too much to replay one by one: wiping the namespace is the safe over-approximation.
        self.tags.clear()
        self.keys.clear()
        self.clear = self.any = True
