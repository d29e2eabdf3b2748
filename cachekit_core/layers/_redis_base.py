"""Configuration, clients, scripts and the invalidation listener of the Redis layer.

The I/O methods live in ``_async/redis_io.py`` (written once) and its generated sync twin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._breaker import CircuitBreaker
from ..exceptions import CacheUnavailable, ConfigurationError
from ..keys import KeySpace
from ._topology import Topology

if TYPE_CHECKING:  # the redis extra is optional: RedisLayer() says how to install it
    import redis
    import redis.asyncio
    from redis import Redis as SyncRedisClient
    from redis.asyncio import Redis as AsyncRedisClient

    from ._read_batch import LoopReads

__all__ = [
    "REDIS_ERRORS",
    "AsyncOp",
    "AsyncRedisClient",
    "NoScriptError",
    "Pending",
    "RedisBase",
    "Row",
    "SyncOp",
    "SyncRedisClient",
]

log = logging.getLogger("cachekit.redis")

try:  # resolved once: these are checked on every call
    from redis.exceptions import NoScriptError, RedisClusterException, RedisError

    # RedisClusterException (e.g. slots not covered while a node is down) is not a RedisError.
    REDIS_ERRORS: tuple[type[BaseException], ...] = (
        RedisError,
        RedisClusterException,
        OSError,
        TimeoutError,
    )
except ImportError:  # the redis extra is not installed; RedisLayer() says so when built

    class NoScriptError(Exception):  # type: ignore[no-redef]
        pass

    REDIS_ERRORS = (OSError, TimeoutError)
T = TypeVar("T")
SyncOp = Callable[["SyncRedisClient"], T]
AsyncOp = Callable[["AsyncRedisClient"], Awaitable[T]]
Row = list[bytes | None]

# Fetch entries and the current versions of their tags in one round trip. The tag keys sit in
# clear text after the envelope's fixed header (see entry.py). Only keys under the namespace
# are read, so a forged header cannot make the script read anything else.
READ_SCRIPT = """
local out = {}
local prefix = ARGV[1]
for i, key in ipairs(KEYS) do
  local blob = redis.call('GET', key)
  if not blob then
    out[i] = false
  else
    local n = 0
    if #blob >= 6 and string.sub(blob, 1, 2) == 'CK' then
      n = string.byte(blob, 5) * 256 + string.byte(blob, 6)
    end
    local row = {blob}
    if n > 0 then
      local tagkeys = {}
      for k in string.gmatch(string.sub(blob, 7, 6 + n), '[^\\n]+') do
        if string.sub(k, 1, #prefix) ~= prefix then
          tagkeys = nil
          break
        end
        tagkeys[#tagkeys + 1] = k
      end
      if tagkeys == nil or #tagkeys == 0 then
        row[2] = '!'
      else
        local vers = redis.call('MGET', unpack(tagkeys))
        for j = 1, #tagkeys do row[j + 1] = vers[j] or '0' end
      end
    end
    out[i] = row
  end
end
return out
"""

# Versions move to max(v + 1, now in microseconds): monotonic even if a tag key expired or was
# cleared, so an old entry can never match a recycled version number (no ABA).
BUMP_SCRIPT = """
local now = tonumber(ARGV[1])
for _, k in ipairs(KEYS) do
  local v = tonumber(redis.call('GET', k) or '0') or 0
  redis.call('SET', k, string.format('%d', math.max(v + 1, now)), 'EX', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return #KEYS
"""

# Delete a key only if it still holds the given value (used to clear out an invalid entry
# that would make SET NX refuse an add, without racing a concurrent valid write).
DELETE_IF_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Release a lock only if we still own it: a lock that expired and was taken by another
# process must not be deleted by the late first owner.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Pending:
    """Invalidations that could not reach Redis; replayed before the next successful call."""

    __slots__ = ("any", "clear", "keys", "tags")

    LIMIT = 10_000

    def __init__(self) -> None:
        self.tags: set[str] = set()
        self.keys: dict[str, str] = {}  # redis entry key -> user key (for the broadcast)
        self.clear = False
        self.any = False  # checked on every call: a plain attribute, not a computed one

    def __bool__(self) -> bool:
        return self.any

    def overflowed(self) -> None:
        # Too much to replay one by one: wiping the namespace is the safe over-approximation.
        self.tags.clear()
        self.keys.clear()
        self.clear = self.any = True


class RedisBase:
    name = "redis"
    shared = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        socket_timeout: float = 0.25,
        connect_timeout: float | None = None,
        max_connections: int | None = 64,
        breaker_threshold: int = 3,
        breaker_cooldown: float = 1.0,
        slow_call: float | None = None,
        tag_ttl: int = 7 * 86400,
        cluster: bool = False,
        **redis_options: Any,
    ) -> None:
        self.topology = Topology.parse(url, cluster=cluster)
        try:
            import redis  # noqa: F401
        except ImportError as exc:
            raise ConfigurationError(
                "RedisLayer needs redis-py: pip install 'cachekit-web[redis]'"
            ) from exc
        self.topology.check_options(redis_options)
        self.url = url
        # Multi-key commands must stay within one slot on a cluster; the I/O checks this flag.
        self.cluster = self.topology.kind == "cluster"
        self.socket_timeout = socket_timeout
        self.options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout or socket_timeout,
            "max_connections": max_connections,
            **redis_options,
        }
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown)
        # A call that succeeds but takes longer than this counts as a failure: a Redis that
        # answers just under the timeout would otherwise slow every request without ever
        # tripping the breaker (several round trips per request add up).
        if slow_call is None and socket_timeout is not None:
            slow_call = socket_timeout / 2
        self.slow_call = slow_call if slow_call is not None else math.inf
        self.tag_ttl = tag_ttl
        self.raise_on_error = False
        self.keys: KeySpace | None = None
        self.pending = Pending()
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.timeouts = 0
        self.slow_calls = 0
        self.skipped = 0
        self._last_log = 0.0
        self._client_obj: redis.Redis | None = None
        self._client_lock = threading.Lock()
        self._aclients: dict[asyncio.AbstractEventLoop, redis.asyncio.Redis] = {}
        self._last_loop: asyncio.AbstractEventLoop | None = None
        self._last_aclient: redis.asyncio.Redis | None = None
        self._loop_reads: dict[asyncio.AbstractEventLoop, LoopReads] = {}  # see _read_batch.py
        self._loop_permits: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}  # _async_limit
        self._listener: threading.Thread | None = None
        self._listener_client: redis.Redis | None = None
        self._stop = threading.Event()
        self.listening = False

    def bind(self, keys: KeySpace, *, raise_on_error: bool) -> None:
        """Attach the layer to one cache's namespace (a layer serves one cache)."""
        if self.keys is not None and self.keys.namespace != keys.namespace:
            raise ConfigurationError("a RedisLayer can serve only one Cache namespace")
        self.keys = keys
        self.raise_on_error = raise_on_error

    @property
    def ks(self) -> KeySpace:
        assert self.keys is not None, "RedisLayer used before Cache bound it"
        return self.keys

    # -- clients: created lazily, no I/O in constructors -------------------------------------
    def _new_client(self, **overrides: Any) -> redis.Redis:
        return self.topology.sync_client({**self.options, **overrides})

    def _client(self) -> redis.Redis:
        client = self._client_obj
        if client is None:
            with self._client_lock:
                if self._client_obj is None:
                    self._client_obj = self._new_client()
                client = self._client_obj
        return client

    def _aclient(self) -> redis.asyncio.Redis:
        # An asyncio client's connections belong to one event loop: keep one client per loop.
        loop = asyncio.get_running_loop()
        if loop is self._last_loop and self._last_aclient is not None:
            return self._last_aclient
        client = self._aclients.get(loop)
        if client is None:
            # Clients of loops that closed without aclose() would otherwise pile up (each one
            # keeps its loop alive): drop them when a new loop shows up.
            for dead in [old for old in self._aclients if old.is_closed()]:
                del self._aclients[dead]
            client = self.topology.async_client(self.options)
            self._aclients[loop] = client
        self._last_loop, self._last_aclient = loop, client
        return client

    # -- failure handling ----------------------------------------------------------------------
    def _slow(self, seconds: float) -> None:
        self.slow_calls += 1
        self.breaker.failure()
        now = time.monotonic()
        if now - self._last_log > 10.0:
            self._last_log = now
            log.warning(
                "cachekit: Redis answered in %.0f ms, over slow_call=%.0f ms (namespace=%s, "
                "circuit=%s)",
                seconds * 1000,
                self.slow_call * 1000,
                self.keys.namespace if self.keys else "?",
                self.breaker.state,
            )

    def _unavailable(self) -> None:
        self.skipped += 1
        if self.raise_on_error:
            raise CacheUnavailable(f"Redis at {self._safe_url()} is unavailable (circuit open)")

    def _failed(self, exc: BaseException) -> None:
        import redis.exceptions as rex

        self.errors += 1
        # A server's answer is not an outage, but a cluster with uncovered slots is.
        if not isinstance(exc, rex.ResponseError) or isinstance(exc, rex.ClusterError):
            timeout = isinstance(exc, rex.TimeoutError | TimeoutError)
            self.timeouts += timeout
            self.breaker.failure(timeout=timeout)
        now = time.monotonic()
        if now - self._last_log > 10.0:  # rate-limited: an outage is one line per 10 s
            self._last_log = now
            log.warning(
                "cachekit: Redis call failed (namespace=%s, circuit=%s): %s: %s",
                self.keys.namespace if self.keys else "?",
                self.breaker.state,
                type(exc).__name__,
                exc,
            )
        if self.raise_on_error:
            raise CacheUnavailable(f"Redis at {self._safe_url()} failed: {exc}") from exc

    def _safe_url(self) -> str:
        return self.topology.safe_url

    # -- the invalidation listener (one thread serves sync and async callers alike) ------------
    def start_listener(
        self, on_message: Callable[[bytes], None], on_connect: Callable[[], None]
    ) -> None:
        if self._listener is not None:
            return
        self._stop.clear()
        self._listener = threading.Thread(
            target=self._listen,
            args=(on_message, on_connect),
            name=f"cachekit-listener-{self.ks.namespace}",
            daemon=True,
        )
        self._listener.start()

    def _listen(self, on_message: Callable[[bytes], None], on_connect: Callable[[], None]) -> None:
        import redis

        backoff = 0.05
        # Health-check PINGs notice a hung or silently dropped connection within seconds;
        # the handshake is bounded like any other call so close() never waits long.
        options = {
            **self.options,
            "socket_timeout": max(2.0, self.socket_timeout * 4),
            "health_check_interval": 1,
            "max_connections": None,
        }
        while not self._stop.is_set():
            client = None
            try:
                client = self._new_client(**options)
                self._listener_client = client
                pubsub = client.pubsub()  # type: ignore[no-untyped-call]
                pubsub.subscribe(self.ks.channel)
                confirmed = pubsub.get_message(timeout=self.socket_timeout * 4)
                if not confirmed or confirmed.get("type") != "subscribe":
                    raise redis.ConnectionError("no subscription confirmation")
                # Anything published while we were not subscribed is lost: start clean, and
                # replay our own undelivered invalidations now rather than on our next call.
                on_connect()
                self.listening = True
                self.on_resubscribe()
                backoff = 0.05
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message and message.get("type") == "message":
                        on_message(message["data"])
            except Exception as exc:  # reconnect on any failure; never let the thread die
                if self.listening and not self._stop.is_set():  # closing is not an outage
                    log.warning("cachekit: invalidation listener lost Redis: %s", exc)
                self.listening = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                self.listening = False
                self._listener_client = None
                if client is not None:
                    with contextlib.suppress(Exception):
                        self.topology.close(client)

    def on_resubscribe(self) -> None:
        """Called by the listener after each (re)subscription (the layer replays pending)."""

    def stop_listener(self) -> None:
        self._stop.set()
        client = self._listener_client
        if client is not None:  # unblock a pending read at once
            with contextlib.suppress(Exception):
                client.close()
        if self._listener is not None:
            # A daemon thread: if it is stuck connecting to a hung server it exits on its own
            # after the (bounded) handshake; closing the cache need not wait for that.
            self._listener.join(timeout=0.3)
            self._listener = None
