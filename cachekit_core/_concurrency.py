"""Single-flight for threads and for asyncio tasks, plus the few primitives that differ
between the sync and async engines (``_async/`` is written against the async names; the
generated ``_sync/`` twin uses the sync ones)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

sync_sleep = time.sleep
async_sleep = asyncio.sleep
SyncEvent = threading.Event
AsyncEvent = asyncio.Event


def sync_wait(event: threading.Event, timeout: float) -> None:
    event.wait(timeout)


async def async_wait(event: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109
    """Wait for ``event`` at most ``timeout`` seconds (no error when it stays unset)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


class Abandoned(Exception):
    """The leading caller of a flight went away (cancelled) before it produced a result."""


class SyncFlight:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def wait(self, timeout: float) -> Any:
        if not self.done.wait(timeout):
            raise TimeoutError("single-flight wait timed out")
        if self.error is not None:
            raise self.error
        return self.value


class SyncFlights:
    """At most one loader per key among the threads of a process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, SyncFlight] = {}

    def join(self, key: str) -> tuple[bool, SyncFlight]:
        """Return (True, flight) to the caller that must load, (False, flight) to waiters."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = SyncFlight()
                return True, flight
            return False, flight

    def __contains__(self, key: str) -> bool:
        return key in self._flights

    def finish(
        self, key: str, flight: SyncFlight, value: Any = None, error: BaseException | None = None
    ) -> None:
        # Remove before waking waiters: a caller arriving after this starts a new flight,
        # and the leader re-reads the cache first, so it finds the value just stored.
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.value, flight.error = value, error
        flight.done.set()


class AsyncFlight:
    __slots__ = ("future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[Any] = loop.create_future()

    async def wait(self, timeout: float) -> Any:  # noqa: ASYNC109 - mirrors SyncFlight.wait
        # shield: a waiter timing out or being cancelled must not cancel the shared result.
        return await asyncio.wait_for(asyncio.shield(self.future), timeout)


class AsyncFlights:
    """At most one loader per key among the tasks of one event loop."""

    def __init__(self) -> None:
        self._flights: dict[tuple[int, str], AsyncFlight] = {}

    def join(self, key: str) -> tuple[bool, AsyncFlight]:
        loop = asyncio.get_running_loop()
        # Keyed by loop too: a future can only be awaited on its own loop. Across loops the
        # Redis lock still keeps the loader to one call.
        slot = (id(loop), key)
        flight = self._flights.get(slot)
        if flight is None or flight.future.get_loop() is not loop:
            flight = self._flights[slot] = AsyncFlight(loop)
            return True, flight
        return False, flight

    def finish(
        self, key: str, flight: AsyncFlight, value: Any = None, error: BaseException | None = None
    ) -> None:
        slot = (id(flight.future.get_loop()), key)
        if self._flights.get(slot) is flight:
            del self._flights[slot]
        if not flight.future.done():
            if error is not None:
                flight.future.set_exception(error)
                # Waiters may all have timed out; don't warn about an unretrieved exception.
                flight.future.exception()
            else:
                flight.future.set_result(value)


_LOADER_HINT = (
    "an async loader was passed to a sync cache call: use aget_or_set / await the async "
    "twin, or decorate an `async def` (which @cache.cached handles)"
)


def sync_call(fn: Callable[[], Any], refusal: str = _LOADER_HINT) -> Any:
    """Call ``fn`` from sync code; an async ``fn`` is a mistake caught here (TypeError with
    ``refusal``), never a coroutine cached or written as if it were a value."""
    result = fn()
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # never awaited: close it so no "never awaited" warning follows
        raise TypeError(refusal)
    return result


async def async_call(fn: Callable[[], Any], refusal: str = _LOADER_HINT) -> Any:
    """Call ``fn``, a plain or an async function (``refusal``: for the sync twin only)."""
    result = fn()
    if inspect.isawaitable(result):
        result = await result
    return result


def sync_shielded(result: Any) -> Any:
    """The sync twin of ``async_shielded``: a sync call cannot be cancelled half-way."""
    return result


async def async_shielded(awaitable: Awaitable[Any]) -> Any:
    """Await ``awaitable`` so that cancelling the caller does not cancel it (a clean-up that
    must finish, such as dropping a cache entry after a failed write)."""
    return await asyncio.shield(awaitable)


def sync_call_blocking(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn`` from sync code (refusing an async function, like ``sync_call``)."""
    return sync_call(lambda: fn(*args))


async def async_call_blocking(fn: Callable[..., Any], *args: Any) -> Any:
    """Await ``fn`` if it is async; else run it in a worker thread so that a slow blocking
    call (a database flush) does not stall the event loop."""
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    ):
        return await fn(*args)
    result = await asyncio.to_thread(fn, *args)
    if inspect.isawaitable(result):
        result = await result
    return result
