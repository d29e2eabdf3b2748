"""State, encoding and the pure steps of write-behind (see ``writes`` for the contract).
The Redis I/O lives in ``_async/writes.py`` and its generated sync twin."""

from __future__ import annotations

import hmac
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, Any, cast

import msgpack

from ..exceptions import CacheUnavailable, ConfigurationError, SerializationError
from ..layers.redis import RedisLayer
from ..throttle import Throttle

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from ..engine import Engine

log = logging.getLogger("cachekit.writes")

Item = tuple[str, Any]
FlushFn = Callable[[list[Item]], Any]
DATA, SIG = b"d", b"s"
# Domain separation: a stream signature can never be replayed as a cache-entry signature.
_SIG_CONTEXT = b"cachekit-write-behind\0"


@dataclass
class WorkerState:
    consumer: str
    group_ready: bool = False
    own_pending: bool = True  # re-read our own unacknowledged entries before new ones
    next_reclaim: float = 0.0  # monotonic time of the next XAUTOCLAIM sweep (0: at once)
    cursor: str = "0-0"  # XAUTOCLAIM cursor of the sweep in progress
    retry_delay: float = 0.0


@dataclass
class _Batch:
    ids: list[Any]  # every id read, good or bad: all are acknowledged after the flush
    items: list[Item]


class WriteBehindBase:
    def __init__(
        self,
        cache: Engine,
        name: str,
        flush: FlushFn,
        *,
        batch_size: int = 500,
        interval: float = 1.0,
        min_idle: float = 30.0,
        reclaim_interval: float | None = None,
        group: str = "cachekit",
        max_retry_delay: float = 30.0,
    ) -> None:
        shared = cache.shared
        if not isinstance(shared, RedisLayer):
            raise ConfigurationError(
                f"write_behind({name!r}) needs a Redis layer: submitted writes are kept in a "
                "Redis Stream so they survive a crash until flushed. Build the cache with "
                "Cache.from_url('redis://...', secret_key=...) or layers=[MemoryLayer(), "
                "RedisLayer(url)]."
            )
        if batch_size < 1:
            raise ConfigurationError("write_behind batch_size must be at least 1")
        if interval <= 0 or min_idle < 0:
            raise ConfigurationError("write_behind interval must be > 0 and min_idle >= 0")
        self.cache = cache
        self.name = name
        self.flush = flush
        self.batch_size = batch_size
        self.interval = interval
        self.min_idle = min_idle
        self.reclaim_interval = min_idle / 2 if reclaim_interval is None else reclaim_interval
        self.group = group
        self.max_retry_delay = max_retry_delay
        self.stream = cache.keyspace.stream(name)
        self._layer: RedisLayer = shared
        self._secret = cache.secret_key
        # Entries queued before a key rotation stay deliverable: verified with the old keys too.
        self._verify_keys = [k for k in (cache.secret_key, *cache.secret_key_fallbacks) if k]
        # Counters of this process (a metric source; the stream itself is the shared truth).
        self.flushed = 0
        self.flush_errors = 0
        self.rejected = 0
        self._error_log = Throttle()

    def __repr__(self) -> str:
        return f"<WriteBehind stream={self.stream!r} group={self.group!r}>"

    # -- encoding ----------------------------------------------------------------------------
    def _mac(self, blob: bytes, secret: bytes | None = None) -> bytes:
        key = secret or self._secret
        assert key is not None
        signer = hmac.new(key, _SIG_CONTEXT + self.stream.encode() + b"\0", sha256)
        signer.update(blob)
        return signer.digest()

    def _encode(self, key: str, value: Any) -> dict[bytes, bytes]:
        if not isinstance(key, str):
            raise TypeError("write-behind keys must be strings")
        try:
            blob: bytes = msgpack.packb([key, value], use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(
                f"write_behind({self.name!r}) cannot encode a {type(value).__name__} with "
                f"msgpack: {exc}. Submit plain data (dict, list, str, int, float, bytes)."
            ) from exc
        fields = {DATA: blob}
        if self._secret:
            fields[SIG] = self._mac(blob)
        return fields

    def _decode(self, fields: dict[Any, Any] | None) -> Item | str:
        """The item of a stream entry, or why it is rejected."""
        if not fields:
            return "empty entry"
        blob, sig = fields.get(DATA), fields.get(SIG)
        if not isinstance(blob, bytes):
            return "no payload"
        if self._secret:
            # Verify before decoding: forged bytes never reach msgpack, let alone flush.
            if not isinstance(sig, bytes) or not any(
                hmac.compare_digest(sig, self._mac(blob, key)) for key in self._verify_keys
            ):
                return "bad or missing signature"
        elif sig is not None:
            return "signed, but no secret_key configured"
        try:
            key, value = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        except Exception as exc:  # any failure on untrusted bytes is a rejection
            return f"undecodable: {type(exc).__name__}"
        if not isinstance(key, str):
            return "key is not a string"
        return key, value

    def _batch(self, entries: list[Any]) -> _Batch:
        batch = _Batch([], [])
        for entry_id, fields in entries:
            if entry_id is None:
                continue
            batch.ids.append(entry_id)
            if not fields:
                # Deleted (XDEL) while pending: Redis returns the id alone. Nothing to flush,
                # and not an attack: just acknowledge it so it leaves the pending list.
                continue
            decoded = self._decode(fields)
            if isinstance(decoded, str):
                self.rejected += 1
                self.cache.report_corrupt(
                    f"write-behind entry {as_str(entry_id)} rejected: {decoded}"
                )
            else:
                batch.items.append(decoded)
        return batch

    def _unavailable(self, exc: BaseException) -> CacheUnavailable:
        return CacheUnavailable(
            f"write_behind({self.name!r}): Redis at {self._layer.safe_url} failed: {exc}"
        )

    # -- worker helpers ----------------------------------------------------------------------
    def _worker_options(self) -> dict[str, Any]:
        layer = self._layer
        # The worker blocks in XREADGROUP for up to `interval`: its socket timeout must be
        # longer than that, or every idle read would look like an outage.
        timeout = max(layer.socket_timeout, self.interval + 2.0)
        return {
            "socket_timeout": timeout,
            "max_connections": None,
            "decode_responses": False,  # stream fields are bytes (payload, signature)
        }

    def _redis_failed(self, exc: BaseException, state: WorkerState) -> float:
        if "NOGROUP" in str(exc):
            # The stream (and its group) vanished, e.g. cache.clear(): recreate them.
            state.group_ready = False
            return 0.0
        if self._error_log.ready():
            log.warning(
                "cachekit: write-behind worker lost Redis (namespace=%s, stream=%s): %s: %s",
                self.cache.namespace,
                self.name,
                type(exc).__name__,
                exc,
            )
        state.group_ready = False
        state.own_pending = True
        return min(max(self.interval, 0.05), self.max_retry_delay)

    def _flush_failed(self, exc: BaseException, batch: _Batch, state: WorkerState) -> float:
        self.flush_errors += 1
        # Nothing was acknowledged: the batch stays in our pending list and is read again.
        state.own_pending = True
        state.retry_delay = min(max(state.retry_delay * 2, self.interval), self.max_retry_delay)
        log.error(
            "cachekit: write-behind flush failed (namespace=%s, stream=%s, %d item(s)); "
            "retrying in %.1f s",
            self.cache.namespace,
            self.name,
            len(batch.items),
            state.retry_delay,
            exc_info=exc,
        )
        return state.retry_delay

    def _reclaim_args(self, state: WorkerState) -> dict[str, Any]:
        return {
            "name": self.stream,
            "groupname": self.group,
            "consumername": state.consumer,
            "min_idle_time": int(self.min_idle * 1000),
            "start_id": state.cursor,
            "count": self.batch_size,
        }

    def _after_reclaim(self, state: WorkerState, reply: Any) -> list[Any]:
        cursor = as_str(reply[0])
        if cursor == "0-0":  # sweep complete: next one after reclaim_interval
            state.cursor = "0-0"
            state.next_reclaim = time.monotonic() + self.reclaim_interval
        else:
            state.cursor = cursor
        return cast(list[Any], reply[1])

    def _new_worker_client(self) -> redis.Redis:
        return self._layer.clients.new(**self._worker_options())

    def _anew_worker_client(self) -> redis.asyncio.Redis:
        return self._layer.clients.anew(**self._worker_options())


def consumer_name() -> str:
    # Unique per worker (not per host or process): two workers never share a pending list,
    # so one can never acknowledge or re-read the other's in-flight batch by mistake.
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_entries(reply: Any) -> list[Any]:
    """The entries of a one-stream XREADGROUP reply (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        streams = list(reply.values())
        return cast(list[Any], streams[0][0]) if streams and streams[0] else []
    return cast(list[Any], reply[0][1])


def is_busygroup(exc: BaseException) -> bool:
    return "BUSYGROUP" in str(exc)
