"""The engine's state and its I/O-free steps, shared by the sync and async operations.

The engine depends on the layer protocols of ``layers/base.py`` only: an optional in-process
``LocalLayer`` (L1) in front of an optional ``SharedLayer`` (L2).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import msgpack

from .._concurrency import AsyncFlights, SyncFlights
from ..entry import MAX_TAG_BYTES, Codec, CorruptEntry, Entry
from ..exceptions import ConfigurationError, SerializationError
from ..keys import KeySpace
from ..layers.base import BAD_VERSION, LocalLayer, SharedLayer
from ..layers.memory import MemoryLayer
from ..serializers import Serializer, get_serializer
from ..throttle import Throttle
from ._races import Recent

log = logging.getLogger("cachekit")

Layer = LocalLayer | SharedLayer
# More distinct invalidated tags than this and the local generation map is reset (with L1).
MAX_LOCAL_TAGS = 100_000
# Entries whose tag keys this process remembers for one-round-trip reads (see _remember_tags).
MAX_TAG_GUESSES = 100_000


@dataclass(slots=True)
class Counters:
    """Engine-wide event counts (per-layer hits and misses live on the layers)."""

    corrupt: int = 0
    early_refreshes: int = 0
    flight_waits: int = 0
    invalidation_errors: int = 0
    invalidations: int = 0
    loader_calls: int = 0
    loader_errors: int = 0
    lock_timeouts: int = 0
    lock_waits: int = 0
    stale_serves: int = 0
    tag_misses: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class EngineCore:
    def __init__(
        self,
        layers: Sequence[Layer] | None = None,
        *,
        namespace: str = "cachekit",
        default_ttl: float | None = 300,
        jitter: float = 0.0,
        serializer: str | Serializer = "msgpack",
        secret_key: str | bytes | None = None,
        secret_key_fallbacks: Iterable[str | bytes] = (),
        allow_unsigned: bool = False,
        compress_threshold: int = 4096,  # below this, zlib saves little and costs every read
        max_value_size: int = 64 * 1024 * 1024,
        raise_on_error: bool = False,
        lock_ttl: float = 30.0,
        lock_wait: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        layers = list(layers) if layers is not None else [MemoryLayer()]
        self.local, self.shared = _split_layers(layers)
        key, fallbacks = _signing_keys(secret_key, secret_key_fallbacks)
        if key is None and self.shared is not None and not allow_unsigned:
            raise ConfigurationError(
                f"a cache with a shared layer ({self.shared.name}, namespace {namespace!r}) "
                "needs secret_key=...: unsigned entries let anyone who can write to it plant "
                "values this app serves as its own (a page, a session). Pass a long random "
                "secret, the same in every process that shares the cache, e.g. "
                "secret_key=os.environ['CACHEKIT_SECRET_KEY']; or pass allow_unsigned=True to "
                "store unsigned entries knowingly (only if no one untrusted can write to it)."
            )
        self.layers = layers
        self.namespace = namespace
        self.keyspace = KeySpace(namespace)
        if not 0 <= jitter < 1:
            raise ConfigurationError("jitter must be in [0, 1): it is a fraction of the TTL")
        self.default_ttl = default_ttl
        self.jitter = jitter
        self._secret_key = key
        self._secret_key_fallbacks = fallbacks
        # Entries are signed with a key of this namespace's own (derived, one-way): an entry
        # or a session blob signed for one namespace never verifies in another. The fallbacks
        # (older secrets, being rotated out) only verify: every write signs with the current.
        purpose = f"entries:{namespace}"
        entry_key = _derive(key, purpose) if key else None
        self._codec = Codec(
            get_serializer(serializer, entry_key),
            entry_key,
            compress_threshold,
            max_value_size,
            tuple(_derive(old, purpose) for old in fallbacks),
        )
        self.raise_on_error = raise_on_error
        self.lock_ttl = lock_ttl
        self.lock_wait = lock_wait
        self._lock_px = max(1, int(lock_ttl * 1000))
        self.clock = clock
        self._origin = uuid.uuid4().hex  # tells this cache's own broadcasts from others'
        # Local tag generations: an L1 entry is valid while the generation of each of its tags
        # equals the one recorded when it entered L1. Missing tags read as _gens_floor, which
        # moves forward whenever the map is reset, so no old snapshot can match again.
        self._gens: dict[str, int] = {}
        self._gens_floor = 0
        self._seq = 0  # bumped by every invalidation seen: guards L1 fills racing with them
        self._tag_guess: dict[str, tuple[str, ...]] = {}
        # Called with (seconds, failed) after every loader call (metrics.register_metrics).
        self.load_observers: list[Callable[[float, bool], None]] = []
        self._flights = SyncFlights()
        self._aflights = AsyncFlights()
        self._add_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._corrupt_log = Throttle()
        # In-process claims (memory-only caches): key -> (monotonic expiry, owner token).
        self._claims: dict[str, tuple[float, str]] = {}
        self._claims_lock = threading.Lock()  # check-and-take is one step across threads
        self.counters = Counters()
        # Race guards (see _races.py): a delete's tombstone outlives any loader that holds the
        # key's lock; this process's own deletes and tag bumps, for its L1 (all there is to a
        # memory-only cache).
        self.tombstone_ttl = max(lock_ttl, 60.0)
        self._deleted = Recent(int(self.tombstone_ttl * 1_000_000))
        self._bumped = Recent(int(self.tombstone_ttl * 1_000_000))
        # The records (sessions) of a memory-only cache live in a store of their own, which
        # clear() and the entries' L1 never touch.
        self._record_store = MemoryLayer() if self.shared is None else None
        if self.shared is not None:
            self.shared.bind(
                self.keyspace, raise_on_error=raise_on_error, tombstone_ttl=self.tombstone_ttl
            )

    def reachable(self) -> bool:
        """Whether every layer is expected to answer now: no shared layer, or its circuit
        is closed (a write made while it is open is replayed as a delete)."""
        return self.shared is None or self.shared.available()

    @property
    def secret_key(self) -> bytes | None:
        """The secret this cache was built with (None: unsigned); each use derives its own."""
        return self._secret_key

    @property
    def secret_key_fallbacks(self) -> tuple[bytes, ...]:
        """Older secrets still accepted when verifying (never used to sign)."""
        return self._secret_key_fallbacks

    # -- tags and local generations ----------------------------------------------------------
    def _tag_keys(self, tags: Iterable[str]) -> tuple[str, ...]:
        if isinstance(tags, str):
            raise TypeError("tags must be a list of strings, not one string")
        return tuple(dict.fromkeys(self.keyspace.tag(t) for t in tags))

    def _snapshot_gens(self, tag_keys: tuple[str, ...]) -> tuple[int, ...]:
        gens, floor = self._gens, self._gens_floor
        return tuple(gens.get(t, floor) for t in tag_keys)

    def tags_current(self, entry: Entry) -> bool:
        """Whether none of ``entry``'s tags was invalidated since it entered L1."""
        gens, floor = self._gens, self._gens_floor
        for tag, gen in zip(entry.tags, entry.gens, strict=False):
            if gens.get(tag, floor) != gen:
                return False
        return len(entry.gens) == len(entry.tags)

    def _usable(self, entry: Entry, now: float) -> bool:
        return now < entry.stale_until and (not entry.tags or self.tags_current(entry))

    def _bump_local(self, tag_keys: Iterable[str]) -> None:
        self._seq += 1
        gens = self._gens
        if len(gens) > MAX_LOCAL_TAGS:
            self._reset_local_tags()
        for tag in tag_keys:
            gens[tag] = max(gens.get(tag, self._gens_floor), self._seq) + 1

    def _reset_local_tags(self) -> None:
        self._seq += 1
        self._gens_floor = max([self._gens_floor, self._seq, *self._gens.values()]) + 1
        self._gens.clear()
        if self.local is not None:
            self.local.clear()

    # -- L1 ------------------------------------------------------------------------------------
    def _fill_local(self, key: str, entry: Entry, now: float, gens: tuple[int, ...] | None) -> None:
        local = self.local
        if local is None:
            return
        if self.shared is not None:
            self.shared.start_listener(self._on_message, self._on_connect)
            if local.ttl is not None:
                entry.local_fresh_until = min(entry.fresh_until, now + local.ttl)
        entry.gens = self._snapshot_gens(entry.tags) if gens is None else gens
        local.set(key, entry)

    def _on_connect(self) -> None:
        # (Re)subscribed: invalidations may have been missed meanwhile, so trust nothing local.
        self._reset_local_tags()

    def _on_message(self, data: bytes) -> None:
        try:
            origin, kind, items = msgpack.unpackb(data, raw=False, unicode_errors="surrogatepass")
        except Exception:
            log.warning(
                "cachekit: ignoring malformed invalidation message (namespace=%s)", self.namespace
            )
            return
        if origin == self._origin:
            return
        if kind == "t":
            self._bump_local(items)
        elif kind == "k":
            self._seq += 1
            local = self.local
            if local is not None:
                for key in items:
                    local.delete(key)
        elif kind == "c":
            self._reset_local_tags()

    def _incr_local(self, key: str, delta: int) -> int:
        """``incr`` for a memory-only cache: the thread lock makes read-modify-write atomic."""
        local = self.local
        assert local is not None
        with self._add_lock:
            entry = local.get(key)
            if (
                entry is None
                or not self._usable(entry, self.clock())
                or (self.clock() >= entry.fresh_until)
            ):
                raise ValueError(f"Key {key!r} not found")
            new = incremented(key, entry, delta)
            new.gens = entry.gens
            local.set(key, new)
            return int(new.value)

    def _observe_load(self, seconds: float, failed: bool) -> None:
        for observer in self.load_observers:
            try:
                observer(seconds, failed)
            except Exception:  # a metrics bug must never break a read
                log.exception("cachekit: load observer failed (namespace=%s)", self.namespace)

    # -- entries -------------------------------------------------------------------------------
    def _new_entry(
        self,
        value: Any,
        ttl: float | None,
        stale_ttl: float,
        tag_keys: tuple[str, ...],
        delta: float,
    ) -> Entry | None:
        """A new entry expiring ``ttl`` seconds from now (None: don't store, ttl <= 0)."""
        if ttl is None:
            ttl = self.default_ttl if self.default_ttl is not None else math.inf
        if ttl <= 0:
            return None
        if tag_keys and sum(map(len, tag_keys)) + len(tag_keys) - 1 > MAX_TAG_BYTES:
            # Tag keys are ASCII (keys.safe_part): characters are bytes.
            raise SerializationError(
                f"one entry's tag keys take more than the envelope's {MAX_TAG_BYTES} bytes "
                f"({len(tag_keys)} tags): use fewer, coarser tags (per table or page, not per row)"
            )
        if self.jitter and not math.isinf(ttl):
            ttl *= 1 + random.uniform(-self.jitter, self.jitter)
        local = self.local
        if self.shared is None and local is not None and local.ttl is not None:
            ttl = min(ttl, local.ttl)  # memory-only: the layer's TTL caps every entry
        now = self.clock()
        return Entry(value, now + ttl, now + ttl + max(stale_ttl, 0.0), tag_keys, delta)

    def _encode(self, ekey: str, entry: Entry, versions: list[int]) -> bytes:
        """The envelope of ``entry`` stored under ``ekey`` (the full key: it is signed too)."""
        try:
            return self._codec.encode(entry, versions, ekey)
        except SerializationError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(
                f"cachekit cannot store a {type(entry.value).__name__} under namespace "
                f"{self.namespace!r} with serializer={self._codec.serializer.name!r}: {exc}. "
                "Convert it to plain data, or use serializer='pickle' with a secret_key."
            ) from exc

    def _decode(self, ekey: str, blob: bytes | None) -> tuple[Entry, list[int]] | None:
        """Decode an entry read from Redis under ``ekey``; None (counted, logged) for anything
        unreadable, forged, or copied there from another key."""
        if blob is None:
            return None
        try:
            return self._codec.decode(blob, ekey)
        except CorruptEntry as exc:
            self.report_corrupt(exc)
            return None

    def _record_entry(self, value: Any, ttl: float | None, now: float) -> Entry | None:
        """A record expiring ``ttl`` seconds from now, exactly (None: ``ttl`` <= 0)."""
        if ttl is None:
            ttl = self.default_ttl if self.default_ttl is not None else math.inf
        if ttl <= 0:
            return None
        return Entry(value, now + ttl, now + ttl)

    def _decode_record(self, rkey: str, blob: bytes | None) -> Entry | None:
        """A record read from Redis under ``rkey``; None (counted) for anything else."""
        decoded = self._decode(rkey, blob)
        if decoded is None:
            return None
        entry, _ = decoded
        if entry.tags:  # records carry no tags: not one of ours
            self.report_corrupt("a record with tags")
            return None
        return entry

    def report_corrupt(self, reason: object) -> None:
        """Count an unreadable entry (a miss) and log it, at most once per 10 s."""
        self.counters.corrupt += 1
        if self._corrupt_log.ready():
            log.warning(
                "cachekit: unreadable entry treated as a miss (namespace=%s): %s",
                self.namespace,
                reason,
            )

    def _versions_current(self, key: str, versions: list[int], current: Sequence[Any]) -> bool:
        """Whether the tag versions an entry was written with are still the current ones."""
        try:
            now = [int(v) if v is not None else 0 for v in current]
        except (TypeError, ValueError):
            now = [BAD_VERSION]
        if BAD_VERSION in now:
            self.report_corrupt("unreadable tag version")
            return False
        if now != versions:
            self.counters.tag_misses += 1
            return False
        return True

    def _decode_row(self, key: str, row: list[bytes | None] | None) -> Entry | None:
        """Decode a row of the read script: the entry, then its tags' current versions."""
        if not row:
            return None
        decoded = self._decode(self.keyspace.entry(key), row[0])
        if decoded is None:
            return None
        entry, versions = decoded
        if len(row) - 1 != len(versions):
            self.report_corrupt("tag versions missing")
            return None
        return entry if self._versions_current(key, versions, row[1:]) else None

    def _tags_in_namespace(self, entry: Entry) -> bool:
        # Unsigned entries can be forged: never read keys other than our namespace's tag keys
        # (which also keeps every tag read within one cluster slot).
        prefix = self.keyspace.tag_prefix
        if all(tag.startswith(prefix) for tag in entry.tags):
            return True
        self.report_corrupt("tag key outside the namespace")
        return False

    def _remember_tags(self, ekey: str, tag_keys: tuple[str, ...]) -> None:
        """Remember which tags an entry has, so its next read fetches their versions with it."""
        guesses = self._tag_guess
        if not tag_keys:
            guesses.pop(ekey, None)
            return
        if len(guesses) >= MAX_TAG_GUESSES:
            guesses.clear()  # a guess is only an optimisation: forgetting costs one round trip
        guesses[ekey] = tag_keys

    def _invalidation_failed(self, what: Iterable[str]) -> None:
        # Loud, because a lost invalidation means stale data; replayed once Redis is back.
        self.counters.invalidation_errors += 1
        log.error(
            "cachekit: invalidation could not reach Redis (namespace=%s, %d item(s)); it will be "
            "replayed when Redis is reachable again",
            self.namespace,
            len(list(what)),
        )

    # -- background work -----------------------------------------------------------------------
    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._executor is None:
            with self._add_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(4, thread_name_prefix="cachekit-refresh")
        self._executor.submit(fn, *args)

    def _aspawn(self, fn: Callable[..., Any], *args: Any) -> None:
        task = asyncio.get_running_loop().create_task(fn(*args))
        self._tasks.add(task)  # keep a reference: the loop only holds weak ones
        task.add_done_callback(self._tasks.discard)

    # -- in-process claims (a memory-only cache's locks) --------------------------------------
    def _claim_local(self, key: str, seconds: float) -> str | None:
        with self._claims_lock:
            now = time.monotonic()
            current = self._claims.get(key)
            if current is not None and current[0] > now:
                return None
            if len(self._claims) > 10_000:
                self._claims = {k: c for k, c in self._claims.items() if c[0] > now}
            token = secrets.token_hex(16)
            self._claims[key] = (now + seconds, token)
            return token

    def _release_local(self, key: str, token: str) -> None:
        # Only the claim's owner releases it: a late release must not free someone else's.
        with self._claims_lock:
            current = self._claims.get(key)
            if current is not None and current[1] == token:
                del self._claims[key]

    # -- observability -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters: hits and misses per layer, loader calls, stale serves, lock waits, errors,
        and the circuit breaker's state."""
        layers: dict[str, dict[str, Any]] = {}
        if self.local is not None:
            layers[self.local.name] = self.local.stats()
        circuit = "none"
        errors = 0
        if self.shared is not None:
            shared = layers[self.shared.name] = self.shared.stats()
            circuit, errors = shared["circuit"], shared["errors"]
        return {
            "namespace": self.namespace,
            "layers": layers,
            **self.counters.as_dict(),
            "errors": errors,
            "circuit": circuit,
        }


def _signing_keys(
    secret_key: str | bytes | None, fallbacks: Iterable[str | bytes]
) -> tuple[bytes | None, tuple[bytes, ...]]:
    """The secret and its fallbacks as bytes (None: no secret), checked."""

    def as_bytes(secret: str | bytes) -> bytes:
        if not isinstance(secret, str | bytes):
            raise ConfigurationError(f"secret keys are str or bytes, not {type(secret).__name__}")
        return secret.encode() if isinstance(secret, str) else bytes(secret)

    if isinstance(fallbacks, str | bytes):
        raise ConfigurationError(
            "secret_key_fallbacks is a list of older secrets, not one secret: "
            "secret_key_fallbacks=[old_key]"
        )
    key = as_bytes(secret_key) if secret_key is not None else None
    if key is not None and not key:
        raise ConfigurationError("secret_key must not be empty (None: no secret)")
    olds = tuple(as_bytes(old) for old in fallbacks)
    if any(not old for old in olds):
        raise ConfigurationError("secret_key_fallbacks must not hold an empty secret")
    if olds and key is None:
        raise ConfigurationError(
            "secret_key_fallbacks only verify entries signed with older secrets: pass the "
            "current one as secret_key=... too (every write is signed with it)"
        )
    return key, olds


def _derive(secret: bytes, purpose: str) -> bytes:
    """A key for one purpose, derived from ``secret`` (HMAC-SHA256 as a one-step KDF)."""
    return hmac.new(secret, b"cachekit-key\0" + purpose.encode(), hashlib.sha256).digest()


def incremented(key: str, entry: Entry, delta: int) -> Entry:
    """A copy of ``entry`` holding ``value + delta``, expiring when the original does."""
    if not isinstance(entry.value, int) or isinstance(entry.value, bool):
        raise TypeError(f"the value of {key!r} is not an integer")
    return Entry(entry.value + delta, entry.fresh_until, entry.fresh_until, entry.tags)


def _split_layers(layers: list[Layer]) -> tuple[LocalLayer | None, SharedLayer | None]:
    """Accept [local], [shared] or [local, shared]: L1 in front of one shared L2."""
    local: LocalLayer | None = None
    shared: SharedLayer | None = None
    for position, layer in enumerate(layers):
        if not layer.shared and position == 0:
            local = layer
        elif layer.shared and shared is None:
            shared = layer
        else:
            raise ConfigurationError(
                "layers must be [MemoryLayer], [RedisLayer] or [MemoryLayer, RedisLayer]"
            )
    if local is None and shared is None:
        raise ConfigurationError("a Cache needs at least one layer")
    return local, shared
