"""``PerLoop``: a value per asyncio event loop (redis.asyncio clients, read batches, permits).

redis.asyncio objects belong to the loop that made them, so each loop gets its own. Not a
``WeakKeyDictionary``: the values (a client's connections, a semaphore's waiters, a batch's
task) refer to their loop, which would keep every weak key alive. Instead the values of loops
that have closed are dropped when a new loop shows up, which is when they could pile up (a test
suite, ``asyncio.run`` per call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    __slots__ = ("_factory", "_last", "_last_loop", "_values")

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._values: dict[asyncio.AbstractEventLoop, T] = {}
        # The loop of the last call and its value: the hot path is one identity check.
        self._last_loop: asyncio.AbstractEventLoop | None = None
        self._last: T | None = None

    def get(self) -> T:
        """The running loop's value, made on first use."""
        loop = asyncio.get_running_loop()
        if loop is self._last_loop:
            return self._last  # type: ignore[return-value]
        value = self._values.get(loop)
        if value is None:
            for dead in [old for old in self._values if old.is_closed()]:
                del self._values[dead]
            value = self._values[loop] = self._factory()
        self._last_loop, self._last = loop, value
        return value

    def pop(self) -> T | None:
        """Forget the running loop's value (when it is closed) and return it."""
        loop = asyncio.get_running_loop()
        if loop is self._last_loop:
            self._last_loop = self._last = None
        return self._values.pop(loop, None)

    def clear(self) -> None:
        self._values.clear()
        self._last_loop = self._last = None
