"""Write-through, written once as async code (the sync twin is generated)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..._concurrency import async_call, async_shielded

if TYPE_CHECKING:
    from ...engine import Engine

_ASYNC_WRITER = "write_through got an async writer: use await cache.awrite_through"


async def awrite_through(
    cache: Engine,
    key: str,
    value: Any,
    writer: Callable[[Any], Any],
    ttl: float | None = None,
    tags: Iterable[str] = (),
) -> Any:
    """Call ``writer(value)`` to write the store (asyncio: a plain or an async function),
    then cache ``value``; return what the writer returned. If either step raises, ``key`` is
    deleted from the cache and the error propagates."""
    try:
        result = await async_call(lambda: writer(value), _ASYNC_WRITER)
        await cache.aset(key, value, ttl=ttl, tags=tags)
    except BaseException:
        # The store may hold the new value, the old one, or half of a write (a cancelled
        # writer may have committed): no cached copy is trustworthy now, so drop it before
        # re-raising, shielded so that a second cancellation cannot leave the old copy.
        await async_shielded(cache.adelete(key))
        raise
    return result
