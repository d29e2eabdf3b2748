"""The shared L2 on redis-py (hiredis parser when installed), sync and ``redis.asyncio``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from .._breaker import CircuitBreaker
from ..exceptions import ConfigurationError
from ..keys import KeySpace
from ._async.redis_io import AsyncRedisIO
from ._batch import ReadBatcher
from ._clients import Clients
from ._health import Health
from ._listener import Listener
from ._pending import Pending
from ._permits import Permits
from ._shared import REDIS_ERRORS
from ._sync.redis_io import SyncRedisIO
from .topology import Topology

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import redis
    import redis.asyncio

    from ._shared import AsyncRedisClient as AsyncRedisClient
    from ._shared import SyncRedisClient as SyncRedisClient

__all__ = ["REDIS_ERRORS", "RedisLayer"]


class RedisLayer(SyncRedisIO, AsyncRedisIO):
    """``RedisLayer(url, socket_timeout=0.25, ...)``: no I/O until first use.

    Every call is bounded by ``socket_timeout`` and goes through a circuit breaker: after
    ``breaker_threshold`` failures (or one timeout) the layer is skipped for
    ``breaker_cooldown`` seconds, then probed again. Pass ``breaker=`` to share one breaker
    between layers on the same server. Extra keywords go to redis-py.

    The I/O is written once (``_async/redis_io.py``, with its generated sync twin); the
    state it works on lives in parts this layer holds: ``clients`` (redis-py clients per
    thread pool and per event loop), ``health`` (breaker, counters, logging), ``pending``
    (invalidations to replay), ``permits`` (asyncio connection limit), ``batcher``
    (concurrent asyncio reads share round trips) and ``listener`` (other processes'
    invalidations).
    """

    name = "redis"
    shared: Literal[True] = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        socket_timeout: float = 0.25,
        connect_timeout: float | None = None,
        max_connections: int | None = 64,
        breaker_threshold: int = 3,
        breaker_cooldown: float = 1.0,
        breaker: CircuitBreaker | None = None,
        slow_call: float | None = None,
        tag_ttl: int = 7 * 86400,
        cluster: bool = False,
        batch_reads: bool = True,
        **redis_options: Any,
    ) -> None:
        topology = Topology.parse(url, cluster=cluster)
        try:
            import redis  # noqa: F401
        except ImportError as exc:
            raise ConfigurationError(
                "RedisLayer needs redis-py: pip install 'cachekit-web[redis]'"
            ) from exc
        topology.check_options(redis_options)
        self.url = url
        self.topology = topology
        # Multi-key commands must stay within one slot on a cluster; the I/O checks this flag.
        self.cluster = topology.kind == "cluster"
        self.socket_timeout = socket_timeout
        self.options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout or socket_timeout,
            "max_connections": max_connections,
            **redis_options,
        }
        self.tag_ttl = tag_ttl
        self.tombstone_ms = 60_000  # Engine.bind sets it from the cache's lock TTL
        self.keys: KeySpace | None = None
        self.hits = 0
        self.misses = 0
        if slow_call is None and socket_timeout is not None:
            slow_call = socket_timeout / 2
        self.breaker = breaker or CircuitBreaker(breaker_threshold, breaker_cooldown)
        self.health = Health(self.breaker, slow_call, topology.safe_url)
        self.clients = Clients(topology, self.options)
        self.pending = Pending()
        self.permits = Permits(max_connections, socket_timeout)
        self.batcher = ReadBatcher(self._amget, self.breaker)
        self.batcher.enabled = batch_reads
        self.listener = Listener(self.clients.new, topology.close, socket_timeout)

    def bind(self, keys: KeySpace, *, raise_on_error: bool, tombstone_ttl: float = 60.0) -> None:
        """Attach the layer to one cache's namespace (a layer serves one cache).
        ``tombstone_ttl``: seconds a delete's tombstone is kept (see ``awrite_if``)."""
        if self.keys is not None and self.keys.namespace != keys.namespace:
            raise ConfigurationError("a RedisLayer can serve only one Cache namespace")
        self.keys = keys
        self.tombstone_ms = max(1, int(tombstone_ttl * 1000))
        self.health.namespace = keys.namespace
        self.health.raise_on_error = raise_on_error

    # -- other processes' invalidations -----------------------------------------------------
    def start_listener(
        self, on_message: Callable[[bytes], None], on_connect: Callable[[], None]
    ) -> None:
        if self.listener.started:
            return

        def connected() -> None:
            on_connect()
            self.replay()  # our own undelivered invalidations go out now, not on our next call

        name = f"cachekit-listener-{self.ks.namespace}"
        self.listener.start(self.ks.channel, on_message, connected, name)

    @property
    def listening(self) -> bool:
        return self.listener.listening

    def available(self) -> bool:
        """Whether calls are expected to reach Redis now (the circuit is closed)."""
        return not self.breaker.open_until

    def remember(self, keys: Mapping[str, str]) -> None:
        """Delete these entries (and tell other processes) once Redis is reachable again."""
        self.pending.add(keys=keys)

    def pending_invalidations(self) -> int:
        return len(self.pending)

    # -- clients for code that needs raw access (write-behind workers, management) ------------
    def client(self) -> redis.Redis:
        """The layer's sync redis-py client (shared, thread-safe pool)."""
        return self.clients.sync()

    def aclient(self) -> redis.asyncio.Redis:
        """The running event loop's redis-py asyncio client."""
        return self.clients.for_loop()

    @property
    def safe_url(self) -> str:
        """The URL without passwords, for logs and messages."""
        return self.topology.safe_url

    # -- lifecycle and counters --------------------------------------------------------------
    def close(self) -> None:
        self.listener.stop()
        self.clients.close()

    async def aclose(self) -> None:
        self.listener.stop()
        await self.clients.aclose()

    def stats(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            **self.health.stats(),
            "listening": self.listening,
            "pending_invalidations": len(self.pending),
            "refused_record_deletes": self.pending.refused,
        }

    def __repr__(self) -> str:
        return f"<RedisLayer {self.safe_url}>"
