"""``Cache``: the public engine object, sync and async on one instance."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Self

from ._decorator import TagSpec, cached
from .engine import Engine
from .layers.base import LocalLayer, SharedLayer
from .layers.memory import DEFAULT_MAX_BYTES, MemoryLayer
from .layers.redis import RedisLayer
from .layers.topology import Topology
from .writes import FlushFn, WriteBehind, awrite_through, write_through

# Keywords of Cache() itself; from_url hands every other keyword to RedisLayer (and from there
# to redis-py: ssl_ca_certs, username, health_check_interval, ...).
_CACHE_OPTIONS = frozenset(inspect.signature(Engine.__init__).parameters) - {"self", "layers"}


class Cache(Engine):
    """A layered cache. ``Cache()`` keeps everything in process (a ``MemoryLayer()``: at most
    10,000 entries and 64 MiB); see ``from_url`` for Redis.

    Every operation has an awaitable twin prefixed with ``a`` (``get`` / ``aget``).
    Constructing a cache does no I/O: connections open on first use.
    """

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        l1: bool = True,
        l1_maxsize: int = 10_000,
        l1_ttl: float | None = 30,
        l1_max_bytes: int | None = DEFAULT_MAX_BYTES,
        **options: Any,
    ) -> Self:
        """An in-process L1 in front of Redis L2 at ``url``. Keywords of ``Cache()`` go there;
        the rest to ``RedisLayer`` (``socket_timeout``, ``cluster``, ``ssl_ca_certs``, ...).
        Entries in Redis are signed: pass ``secret_key=...`` (``ConfigurationError`` without
        one), or ``allow_unsigned=True`` to store them unsigned knowingly.

        The L1 holds at most ``l1_maxsize`` entries and ``l1_max_bytes`` bytes (64 MiB by
        default, counted as ``MemoryLayer`` counts them; ``None``: no byte bound)."""
        redis_options = {k: options.pop(k) for k in list(options) if k not in _CACHE_OPTIONS}
        # A misspelt keyword may be one of ours: offer those as hints too.
        Topology.parse(url, cluster=redis_options.get("cluster", False)).check_options(
            {k: v for k, v in redis_options.items() if k not in _LAYER_OPTIONS},
            also=FROM_URL_KEYWORDS | _LAYER_OPTIONS,
        )
        redis = RedisLayer(url, **redis_options)
        layers: list[LocalLayer | SharedLayer] = [redis]
        if l1:
            layers.insert(0, MemoryLayer(l1_maxsize, ttl=l1_ttl, max_bytes=l1_max_bytes))
        return cls(layers, **options)

    def cached(
        self,
        ttl: float | None = None,
        *,
        key: str | None = None,
        tags: TagSpec = (),
        stale_ttl: float = 0.0,
        negative_ttl: float | None = None,
        early_refresh: float | None = None,
        lock: bool = True,
    ) -> Callable[[Callable[..., Any]], Any]:
        """Cache a function's (or coroutine's) result under ``key`` (a template bound from its
        parameters, e.g. ``"user:{user_id}"``); ``tags`` are templates or a callable receiving
        the parameters by name. The wrapper gains ``.invalidate(...)`` / ``.ainvalidate(...)``.
        """
        return cached(
            self,
            ttl=ttl,
            key=key,
            tags=tags,
            stale_ttl=stale_ttl,
            negative_ttl=negative_ttl,
            early_refresh=early_refresh,
            lock=lock,
        )

    # Write-through: cache.write_through(key, value, writer, ttl=None, tags=()) and its
    # asyncio twin (see cachekit_core.writes): the functions take the cache first.
    write_through = write_through
    awrite_through = awrite_through

    def write_behind(self, name: str, flush: FlushFn, **options: Any) -> WriteBehind:
        """A durable write-behind queue ``name`` (a Redis Stream) drained in batches by
        ``flush(items)``; delivery is at-least-once. ``options``: ``WriteBehind``'s keywords
        (``batch_size``, ``interval``, ``min_idle``, ...; see ``cachekit_core.writes``).
        Raises ConfigurationError when the cache has no Redis layer."""
        return WriteBehind(self, name, flush, **options)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        names = "+".join(layer.name for layer in self.layers)
        return f"<Cache namespace={self.namespace!r} layers={names}>"


# Every keyword from_url keeps for itself (Cache()'s and its own), and RedisLayer's: the rest
# goes to redis-py, whose typo check (layers/topology.py) suggests these too.
FROM_URL_KEYWORDS = _CACHE_OPTIONS | (
    frozenset(inspect.signature(Cache.from_url).parameters) - {"url", "options"}
)
_LAYER_OPTIONS = frozenset(inspect.signature(RedisLayer.__init__).parameters) - {
    "self",
    "url",
    "redis_options",
}
