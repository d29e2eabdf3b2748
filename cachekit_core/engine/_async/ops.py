"""The engine's operations, written once as async code (``_sync/engine.py`` is generated).

Read path: L1 (no I/O) -> L2 with tag versions in one round trip -> single-flight within the
process -> Redis lock across processes -> re-read -> loader -> write L2 then L1.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ... import tracing
from ..._concurrency import Abandoned, async_call, async_sleep
from ...entry import Entry
from ...exceptions import CacheUnavailable
from ...layers.base import BAD_VERSION
from ...policy import Policy
from ...results import (
    HIT,
    READ_MISS,
    READ_UNAVAILABLE,
    UNAVAILABLE,
    UNTAGGED,
    Read,
    TagSnapshot,
    now_us,
)
from .._core import EngineCore, incremented, log


class AsyncEngineOps(EngineCore):
    # -- public API ------------------------------------------------------------------------
    async def aget(self, key: str, default: Any = None) -> Any:
        """Return the fresh value cached under ``key``, or ``default``."""
        entry = (await self.aread(key)).entry
        if entry is None or self.clock() >= entry.fresh_until:
            return default
        return entry.value

    async def aget_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return ``{key: value}`` for the keys that hold a fresh value."""
        found = await self._alookup_many(list(keys))
        now = self.clock()
        return {key: e.value for key, e in found.items() if now < e.fresh_until}

    async def aset(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        tags: Iterable[str] = (),
        stale_ttl: float = 0.0,
    ) -> bool:
        """Store ``value`` in every layer; ``ttl`` <= 0 deletes instead. True if stored.
        ``stale_ttl`` lets ``get_or_set`` serve it stale that long after expiry."""
        return await self.aset_many({key: value}, ttl, tags, stale_ttl)

    async def aset_many(
        self,
        mapping: Mapping[str, Any],
        ttl: float | None = None,
        tags: Iterable[str] = (),
        stale_ttl: float = 0.0,
    ) -> bool:
        # since=0: a set is unconditional (a value given now, not computed from an old read).
        snapshot = await self._atake_snapshot(self._tag_keys(tags), 0, check=False)
        stored, _ = await self._astore(mapping, ttl, stale_ttl, snapshot)
        return stored

    async def asnapshot(self, tags: Iterable[str], *, since: int | None = None) -> TagSnapshot:
        """The current versions of ``tags``, to take *before* computing what ``awrite`` will
        store with them: an invalidation in between then leaves the value stale at once, and
        a ``delete`` of its key in between refuses it.

        ``since``: when the computation really started (``results.now_us()``), if earlier than
        now, e.g. a request's start, before its dependencies read the database: a tag already
        invalidated after it makes the snapshot ``stale``, and nothing is stored with it."""
        if since is None:
            return await self._atake_snapshot(self._tag_keys(tags), now_us(), check=False)
        return await self._atake_snapshot(self._tag_keys(tags), since, check=True)

    async def _atake_snapshot(
        self, tag_keys: tuple[str, ...], since: int, *, check: bool
    ) -> TagSnapshot:
        if not tag_keys:
            return TagSnapshot(since=since) if since else UNTAGGED
        gens = self._snapshot_gens(tag_keys)
        versions = await self._ashared_versions(tag_keys)
        stale = check and (
            self._bumped.changed_after(tag_keys, since)
            or (versions is not None and any(v > since for v in versions))
        )
        return TagSnapshot(tag_keys, gens, versions, since, stale)

    async def awrite(
        self,
        mapping: Mapping[str, Any],
        *,
        ttl: float | None = None,
        stale_ttl: float = 0.0,
        snapshot: TagSnapshot = UNTAGGED,
    ) -> bool:
        """Store ``mapping`` with the tags of ``snapshot`` (see ``asnapshot``); ``ttl`` <= 0
        deletes. True if every value reached the shared layer (memory-only: if stored)."""
        _, shared = await self._astore(mapping, ttl, stale_ttl, snapshot)
        return shared

    async def _astore(
        self, mapping: Mapping[str, Any], ttl: float | None, stale_ttl: float, snap: TagSnapshot
    ) -> tuple[bool, bool]:
        entries: dict[str, Entry] = {}
        expired: list[str] = []
        for key, value in mapping.items():
            entry = self._new_entry(value, ttl, stale_ttl, snap.tag_keys, 0.0)
            if entry is None:
                expired.append(key)
            else:
                entries[key] = entry
        delivered = True
        if expired:
            delivered = await self.ainvalidate(expired)
        if not entries:
            return False, delivered
        if snap.stale:  # computed from reads an invalidation has overtaken: never kept
            return False, False
        stored, shared, _ = await self._awrite_entries(
            entries, snap.versions, snap.gens, snap.since
        )
        return stored, shared and delivered

    async def aadd(
        self, key: str, value: Any, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> bool:
        """Store ``value`` only if ``key`` holds no fresh value. True if it was stored."""
        return bool(await self.ainsert(key, value, ttl, tags))

    async def ainsert(
        self, key: str, value: Any, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> bool | None:
        """``add`` that says why not: True stored, False ``key`` holds a fresh value, None Redis
        could not be asked (a session store must not take that for "taken")."""
        tag_keys = self._tag_keys(tags)
        gens = self._snapshot_gens(tag_keys)
        entry = self._new_entry(value, ttl, 0.0, tag_keys, 0.0)
        if entry is None:
            return False
        shared = self.shared
        if shared is None:
            with self._add_lock:
                current = self.local.get(key) if self.local is not None else None
                if (
                    current is not None
                    and self._usable(current, self.clock())
                    and self.clock() < current.fresh_until
                ):
                    return False
                self._fill_local(key, entry, self.clock(), gens)
                return True
        versions = await self._ashared_versions(tag_keys)
        if versions is None:
            return None
        ekey = self.keyspace.entry(key)
        blob = self._encode(ekey, entry, versions)
        px = entry.ttl_ms(self.clock())
        stored = await shared.aadd(ekey, blob, px, key, self._origin)
        if stored is False:
            # SET NX also refuses when Redis holds an entry that is no longer fresh (stale,
            # tag-invalidated or corrupt). Remove exactly that blob, then try once more.
            rows = await shared.aread([ekey])
            if rows is None:
                return None
            row = rows[0] if rows else None
            current = self._decode_row(key, row)
            if row is None or row[0] is None:
                return False
            if current is not None and self.clock() < current.fresh_until:
                return False
            if not await shared.adelete_if(ekey, row[0]):
                return False
            stored = await shared.aadd(ekey, blob, px, key, self._origin)
        if stored and self.local is not None:
            self._fill_local(key, entry, self.clock(), gens)
        return stored

    async def areplace(
        self, key: str, value: Any, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> bool | None:
        """Store ``value`` only if ``key`` exists (SET XX): True replaced, False absent (so a
        deleted or rotated session is never brought back by a late save), None Redis could
        not be asked."""
        tag_keys = self._tag_keys(tags)
        gens = self._snapshot_gens(tag_keys)
        entry = self._new_entry(value, ttl, 0.0, tag_keys, 0.0)
        shared = self.shared
        if shared is None:
            with self._add_lock:
                current = self.local.get(key) if self.local is not None else None
                if current is None or not self._usable(current, self.clock()):
                    return False
                if entry is None:
                    return await self.ainvalidate([key])
                self._fill_local(key, entry, self.clock(), gens)
                return True
        if entry is None:  # ttl <= 0: replacing is expiring
            return await self.ainvalidate([key])
        versions = await self._ashared_versions(tag_keys)
        if versions is None:
            return None
        ekey = self.keyspace.entry(key)
        blob = self._encode(ekey, entry, versions)
        replaced = await shared.areplace(ekey, blob, entry.ttl_ms(self.clock()), key, self._origin)
        local = self.local
        if local is not None:
            if replaced:
                self._fill_local(key, entry, self.clock(), gens)
            else:
                local.delete(key)
        return replaced

    async def adelete(self, key: str) -> bool:
        """Remove ``key`` from every layer (and from other processes' L1). True if it existed."""
        return await self.adelete_many([key]) > 0

    async def adelete_many(self, keys: Iterable[str]) -> int:
        removed, _ = await self._aremove(list(keys))
        return removed

    async def ainvalidate(self, keys: Iterable[str]) -> bool:
        """Remove ``keys`` from every layer and every process's L1. True if Redis was reached
        (memory-only: always); otherwise the deletion is replayed once Redis is back."""
        _, delivered = await self._aremove(list(keys))
        return delivered

    async def _aremove(self, keys: list[str]) -> tuple[int, bool]:
        # Before anything is removed: a value computed from an earlier read is then refused
        # here (L1 fills check _deleted and _seq), and in Redis by the tombstone the delete
        # leaves (see _awrite_entries).
        self._deleted.note(keys, now_us())
        self._seq += 1
        removed = 0
        local = self.local
        if local is not None:
            for key in keys:
                removed += local.delete(key)
        shared = self.shared
        if shared is None or not keys:
            return removed, True
        count = await shared.adelete({self.keyspace.entry(k): k for k in keys}, self._origin)
        if count is None:
            return removed, False
        return max(removed, count), True

    async def ahas_key(self, key: str) -> bool:
        """Whether ``key`` holds a fresh value."""
        entry = (await self.aread(key)).entry
        return entry is not None and self.clock() < entry.fresh_until

    async def atouch(self, key: str, ttl: float | None = None) -> bool:
        """Give ``key`` a new TTL from now, keeping its value and tags. False if absent."""
        since = now_us()  # a delete while we touch must not be undone by our write
        entry = (await self.aread(key)).entry
        if entry is None or self.clock() >= entry.fresh_until:
            return False
        new = self._new_entry(entry.value, ttl, 0.0, entry.tags, entry.delta)
        if new is None:
            return await self.adelete(key)
        versions = await self._ashared_versions(entry.tags)
        gens = self._snapshot_gens(entry.tags)
        stored, _, _ = await self._awrite_entries({key: new}, versions, gens, since)
        return stored

    async def aincr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer under ``key`` atomically (across processes, under the
        key's lock, reading Redis past this process's copy) and return it; the TTL is kept.
        Raises ValueError if the key is absent, CacheUnavailable if Redis cannot be asked (a
        counter that fails open would admit what it exists to limit)."""
        shared = self.shared
        if shared is None:
            return self._incr_local(key, delta)
        lock_key, token = self.keyspace.lock(key), secrets.token_hex(16)
        held = await shared.aacquire(lock_key, token, self._lock_px)
        if held is False:
            held = await self._await_lock_owner(key, lock_key, token, reread=False)
        if held is None:
            raise CacheUnavailable(f"incr({key!r}): Redis could not be asked; not incremented")
        try:
            since = now_us()  # a delete (a counter reset) while we add is never undone
            # Past L1: another process's increment may not have reached this process's copy
            # yet, and a counter read from it would lose that update.
            read = await self.aread(key, local=False)
            if read.status is UNAVAILABLE:
                raise CacheUnavailable(f"incr({key!r}): Redis could not be asked")
            entry = read.entry
            if entry is None or self.clock() >= entry.fresh_until:
                raise ValueError(f"Key {key!r} not found")
            new = incremented(key, entry, delta)
            versions = await self._ashared_versions(entry.tags)
            gens = self._snapshot_gens(entry.tags)
            _, stored, refused = await self._awrite_entries({key: new}, versions, gens, since)
            if refused:
                raise ValueError(f"Key {key!r} not found (deleted while incrementing)")
            if not stored:
                raise CacheUnavailable(f"incr({key!r}): the new value did not reach Redis")
            return int(new.value)
        finally:
            if held:
                await shared.arelease(lock_key, token)

    async def aget_or_set(
        self,
        key: str,
        loader: Callable[[], Any],
        ttl: float | None = None,
        tags: Iterable[str] = (),
        stale_ttl: float = 0.0,
        negative_ttl: float | None = None,
        early_refresh: float | None = None,
        lock: bool = True,
    ) -> Any:
        """Return the cached value, or call ``loader`` once (per key, across processes)."""
        policy = Policy(ttl, tuple(tags), stale_ttl, negative_ttl, early_refresh, lock)
        return await self.aresolve(key, loader, policy)

    async def ainvalidate_tags(self, *tags: str | Iterable[str]) -> bool:
        """Make every entry carrying any of ``tags`` a miss, in every layer and process.
        True if Redis was reached (memory-only: always); otherwise the bump is replayed once
        Redis is back (and ``raise_on_error`` raises CacheUnavailable)."""
        tag_keys = self._tag_keys(_flatten(tags))
        if not tag_keys:
            return True
        self._bumped.note(tag_keys, now_us())  # see asnapshot(since=...)
        self._bump_local(tag_keys)
        self.counters.invalidations += len(tag_keys)
        shared = self.shared
        if shared is None:
            return True
        try:
            delivered = await shared.abump_tags(list(tag_keys), self._origin)
        except CacheUnavailable:
            self._invalidation_failed(tag_keys)
            raise
        if not delivered:
            self._invalidation_failed(tag_keys)
        return delivered

    async def aclear(self) -> bool:
        """Remove every cached entry of this namespace (and only this namespace) from every
        layer: never records (``records``: sessions) or write-behind streams, which hold data
        that exists nowhere else. True if Redis was reached (memory-only: always)."""
        self._deleted.reset(now_us())  # what this process was computing is not kept in L1
        self._reset_local_tags()
        shared = self.shared
        if shared is None:
            return True
        delivered = await shared.aclear(self._origin)
        if not delivered:
            self._invalidation_failed(("clear",))
        return delivered

    async def aclaim(self, key: str, seconds: float) -> str | None:
        """Claim ``key`` exclusively for ``seconds`` (a Redis lock, or in process for a
        memory-only cache); the token to release it with, or None if someone holds it (or
        Redis could not be asked)."""
        shared = self.shared
        if shared is None:
            return self._claim_local(key, seconds)
        token = secrets.token_hex(16)
        held = await shared.aacquire(self.keyspace.lock(key), token, max(1, int(seconds * 1000)))
        return token if held else None

    async def arelease(self, key: str, token: str) -> None:
        """Give back a claim (only its owner's token releases it)."""
        shared = self.shared
        if shared is None:
            self._release_local(key, token)
        else:
            await shared.arelease(self.keyspace.lock(key), token)

    # -- the read path -----------------------------------------------------------------------
    async def aread(self, key: str, *, local: bool = True) -> Read:
        """Look ``key`` up in every layer: HIT (the entry may be fresh or still stale-servable:
        see ``Read.is_fresh``), MISS, or UNAVAILABLE when Redis could not be asked (then the
        entry, if any, is this process's copy). This is the hot read path.

        ``local=False`` asks Redis even when this process holds a copy, and uses none (what
        another process just changed or deleted, a session, is seen at once)."""
        now = self.clock()
        layer = self.local if local or self.shared is None else None
        fallback = None
        if layer is not None:
            entry = layer.get(key)
            if entry is not None:
                if now < entry.local_fresh_until and (not entry.tags or self.tags_current(entry)):
                    layer.hits += 1
                    return Read(HIT, entry)
                if self._usable(entry, now):
                    fallback = entry
                else:
                    layer.delete(key)
            layer.misses += 1
        shared = self.shared
        if shared is None:
            return READ_MISS if fallback is None else Read(HIT, fallback)
        seq = self._seq  # see _alookup_many
        ekey = self.keyspace.entry(key)
        guess = self._tag_guess.get(ekey, ())
        row = await shared.aread_one(ekey, guess)
        if row is None:  # Redis unavailable: keep serving what L1 holds
            return READ_UNAVAILABLE if fallback is None else Read(UNAVAILABLE, fallback)
        entry = await self._adecode_one(key, ekey, row, guess)
        if entry is not None and now < entry.stale_until:
            shared.hits += 1
            if layer is not None and seq == self._seq:
                self._fill_local(key, entry, now, None)
            return Read(HIT, entry)
        shared.misses += 1
        if fallback is not None and now >= fallback.fresh_until:
            return Read(HIT, fallback)  # stale-while-revalidate from the local copy
        return READ_MISS

    async def _adecode_one(
        self, key: str, ekey: str, row: list[bytes | None], guess: tuple[str, ...]
    ) -> Entry | None:
        """Decode and tag-check one entry read with the versions of the tags we guessed."""
        decoded = self._decode(ekey, row[0])
        if decoded is None:
            return None
        entry, versions = decoded
        if not entry.tags and not guess:
            return entry  # the common case: an untagged entry read with a plain GET
        current: Sequence[Any] | None = row[1:]
        if entry.tags != guess:
            # First read of this key here, or its tags changed: fetch their versions once and
            # remember the tags, so the next read is one MGET again.
            if not self._tags_in_namespace(entry):
                return None
            self._remember_tags(ekey, entry.tags)
            if not entry.tags:
                return entry
            shared = self.shared
            assert shared is not None
            current = await shared.atag_versions(list(entry.tags))
        if current is None:
            return None  # cannot verify the tags: not a hit
        return entry if self._versions_current(key, versions, current) else None

    async def _alookup_many(self, keys: list[str]) -> dict[str, Entry]:
        """Fresh or still-stale-servable entries, filling L1 from L2."""
        now = self.clock()
        found: dict[str, Entry] = {}
        fallback: dict[str, Entry] = {}
        need: list[str] = []
        local = self.local
        for key in keys:
            if local is not None:
                entry = local.get(key)
                if entry is not None:
                    if not self._usable(entry, now):
                        local.delete(key)
                    elif now < entry.local_fresh_until:
                        local.hits += 1
                        found[key] = entry
                        continue
                    else:
                        fallback[key] = entry
                local.misses += 1
            need.append(key)
        shared = self.shared
        if shared is None or not need:
            found.update(fallback)
            return found
        # A broadcast arriving during the read bumps _seq: then the copy we read may already
        # be invalid, so it is returned but not kept in L1.
        seq = self._seq
        rows = await shared.aread([self.keyspace.entry(k) for k in need])
        if rows is None:
            # Redis unavailable: keep serving what L1 holds, even past its L1 trust window.
            found.update(fallback)
            return found
        for key, row in zip(need, rows, strict=True):
            entry = self._decode_row(key, row)
            if entry is not None and now < entry.stale_until:
                shared.hits += 1
                found[key] = entry
                if local is not None and seq == self._seq:
                    self._fill_local(key, entry, now, None)
                continue
            shared.misses += 1
            stale = fallback.get(key)
            if stale is not None and now >= stale.fresh_until:
                found[key] = stale  # stale-while-revalidate from the local copy
        return found

    async def aresolve(self, key: str, loader: Callable[[], Any], policy: Policy) -> Any:
        """``get_or_set`` with a prepared ``Policy`` (what ``@cached`` calls on an L1 miss)."""
        entry = (await self.aread(key)).entry
        if entry is not None:
            now = self.clock()
            if now < entry.fresh_until:
                if policy.early_refresh and _xfetch_due(entry, now, policy.early_refresh):
                    self.counters.early_refreshes += 1
                    self._aspawn(self._arefresh, key, loader, policy)
                return entry.value
            self.counters.stale_serves += 1
            self._aspawn(self._arefresh, key, loader, policy)
            return entry.value
        return await self._aload(key, loader, policy)

    async def _aload(self, key: str, loader: Callable[[], Any], policy: Policy) -> Any:
        leader, flight = self._aflights.join(key)
        if not leader:
            self.counters.flight_waits += 1
            try:
                return await flight.wait(self.lock_ttl + self.lock_wait)
            except (TimeoutError, Abandoned):
                # The leader vanished or is stuck: load without it rather than wait forever.
                return await self._aload_locked(key, loader, policy)
        try:
            value = await self._aload_locked(key, loader, policy)
        except Exception as exc:
            self._aflights.finish(key, flight, error=exc)
            raise
        except BaseException:
            self._aflights.finish(key, flight, error=Abandoned())
            raise
        self._aflights.finish(key, flight, value)
        return value

    async def _aload_locked(self, key: str, loader: Callable[[], Any], policy: Policy) -> Any:
        shared = self.shared
        if shared is None or not policy.lock:
            # Another flight may have finished just before this one started.
            entry = (await self.aread(key)).entry
            if entry is not None and self.clock() < entry.fresh_until:
                return entry.value
            return await self._acompute(key, loader, policy, entry)
        lock_key, token = self.keyspace.lock(key), secrets.token_hex(16)
        held = await shared.aacquire(lock_key, token, self._lock_px)
        if held is False:
            held = await self._await_lock_owner(key, lock_key, token)
        try:
            # Re-read after taking the lock: its previous owner may have just stored the value.
            entry = (await self.aread(key)).entry
            if entry is not None and self.clock() < entry.fresh_until:
                return entry.value
            return await self._acompute(key, loader, policy, entry)
        finally:
            if held:
                await shared.arelease(lock_key, token)

    async def _await_lock_owner(
        self, key: str, lock_key: str, token: str, *, reread: bool = True
    ) -> bool:
        """Wait (bounded, with backoff) while another process holds the key's lock; True if we
        got the lock. With ``reread``, stop early once the owner has stored a fresh value."""
        shared = self.shared
        assert shared is not None
        self.counters.lock_waits += 1
        deadline = time.monotonic() + self.lock_wait
        delay = 0.002
        while True:
            await async_sleep(delay)
            delay = min(delay * 2, 0.05)
            if reread:
                entry = (await self.aread(key)).entry
                if entry is not None and self.clock() < entry.fresh_until:
                    return False  # the caller's re-read finds it
            held = await shared.aacquire(lock_key, token, self._lock_px)
            if held is not False:
                return bool(held)  # True: ours now; None: Redis gone, load without a lock
            if time.monotonic() >= deadline:
                # Never deadlock on a lost or slow owner: load ourselves.
                self.counters.lock_timeouts += 1
                return False

    async def _acompute(
        self, key: str, loader: Callable[[], Any], policy: Policy, stale: Entry | None
    ) -> Any:
        # Snapshot *before* loading: a tag invalidation that lands while the loader runs then
        # leaves the new entry stale at once, and a delete of the key refuses it (no stale
        # write-back race).
        snap = await self._atake_snapshot(self._tag_keys(policy.tags), now_us(), check=False)
        tag_keys = snap.tag_keys
        self.counters.loader_calls += 1
        started = time.perf_counter()
        try:
            spans = tracing.SPANS
            if spans is None or not spans.on():
                value = await async_call(loader)
            else:
                with spans.load(self.namespace):  # current: the loader's own spans nest in it
                    value = await async_call(loader)
        except Exception:
            self.counters.loader_errors += 1
            self._observe_load(time.perf_counter() - started, True)
            if stale is not None and self.clock() < stale.stale_until:
                self.counters.stale_serves += 1
                log.warning("cachekit: loader failed, serving stale (namespace=%s)", self.namespace)
                return stale.value
            raise
        delta = time.perf_counter() - started
        self._observe_load(delta, False)
        if value is None:
            if policy.negative_ttl is None:
                return None
            entry = self._new_entry(None, policy.negative_ttl, 0.0, tag_keys, delta)
        else:
            entry = self._new_entry(value, policy.ttl, policy.stale_ttl, tag_keys, delta)
        if entry is not None:
            await self._awrite_entries({key: entry}, snap.versions, snap.gens, snap.since)
        return value

    async def _arefresh(self, key: str, loader: Callable[[], Any], policy: Policy) -> None:
        """Background refresh of a stale (or early-expiring) entry: once, never raising."""
        leader, flight = self._aflights.join(key)
        if not leader:
            return
        value: Any = None
        error: BaseException | None = Abandoned()
        try:
            shared = self.shared
            lock_key, token = self.keyspace.lock(key), secrets.token_hex(16)
            held = None
            if shared is not None and policy.lock:
                held = await shared.aacquire(lock_key, token, self._lock_px)
                if held is False:
                    return  # another process is refreshing it
            try:
                current = (await self.aread(key)).entry
                if (
                    current is not None
                    and self.clock() < current.fresh_until
                    and (not policy.early_refresh or current.delta == 0)
                ):
                    value, error = current.value, None
                else:
                    value = await self._acompute(key, loader, policy, current)
                    error = None
            finally:
                if held and shared is not None:
                    await shared.arelease(lock_key, token)
        except Exception:
            log.exception("cachekit: background refresh failed (namespace=%s)", self.namespace)
        finally:
            self._aflights.finish(key, flight, value, error)

    # -- writes ------------------------------------------------------------------------------
    async def _ashared_versions(self, tag_keys: tuple[str, ...]) -> list[int] | None:
        """Current Redis versions of ``tag_keys``; None if Redis is unavailable, or holds a
        version that is not one of ours (then nothing is written there under these tags)."""
        shared = self.shared
        if shared is None or not tag_keys:
            return []
        versions = await shared.atag_versions(list(tag_keys))
        if versions is not None and BAD_VERSION in versions:
            self.report_corrupt("unreadable tag version")
            return None
        return versions

    async def _awrite_entries(
        self,
        entries: dict[str, Entry],
        versions: list[int] | None,
        gens: tuple[int, ...],
        since: int = 0,
    ) -> tuple[bool, bool, bool]:
        """Write entries to every layer: (stored anywhere, stored in the shared layer or there
        is none, refused). With ``since`` (a snapshot's, in microseconds) an entry whose key
        was deleted after it is refused in every layer: by its tombstone in Redis (a script on
        this write path only; reads stay one GET), by this process's own deletes in L1."""
        now = self.clock()
        count = len(entries)
        deleted = self._deleted
        if since and deleted.changed_after(entries, since):
            entries = {k: e for k, e in entries.items() if not deleted.changed_after((k,), since)}
        stored = shared_ok = False
        shared = self.shared
        if shared is None:
            shared_ok = len(entries) == count
        elif versions is None:
            # Redis was unreachable for the tag versions: the old value it holds must be
            # deleted (and other processes told) once it is back.
            shared.remember({self.keyspace.entry(k): k for k in entries})
        elif entries:
            items = []
            for key, entry in entries.items():
                ekey = self.keyspace.entry(key)
                items.append((ekey, key, self._encode(ekey, entry, versions), entry.ttl_ms(now)))
            if since:
                outcome = await shared.awrite_if(items, self._origin, since)
                if outcome is not None:  # None: unavailable, kept in L1 as any failed write is
                    pairs = zip(entries.items(), outcome, strict=True)
                    entries = {k: e for (k, e), ok in pairs if ok}
                    stored = shared_ok = len(entries) == count
            else:
                stored = shared_ok = await shared.awrite(items, self._origin)
            for key, entry in entries.items():
                self._remember_tags(self.keyspace.entry(key), entry.tags)
        if self.local is not None and entries:
            for key, entry in entries.items():
                self._fill_local(key, entry, now, gens)
            stored = True
        return stored, shared_ok, len(entries) < count

    # -- records: values kept for their owner (sessions), which the cache does not own -------
    async def aread_record(self, key: str, *, local: bool = False) -> Read:
        """The record under ``key`` (see ``records``): HIT (fresh), MISS, or UNAVAILABLE when
        Redis could not be asked. Always read from Redis: no process keeps a record in L1
        (``local`` is accepted for the entry API's sake; a memory-only cache keeps its records
        in a store of their own)."""
        store = self._record_store
        if store is not None:
            entry = store.get(key)
            if entry is None:
                return READ_MISS
            if self.clock() >= entry.fresh_until:
                store.delete(key)
                return READ_MISS
            return Read(HIT, entry)
        shared = self.shared
        assert shared is not None
        rkey = self.keyspace.record(key)
        row = await shared.aread_one(rkey, ())
        if row is None:
            return READ_UNAVAILABLE
        entry = self._decode_record(rkey, row[0])
        if entry is None or self.clock() >= entry.fresh_until:
            return READ_MISS
        return Read(HIT, entry)

    async def awrite_records(self, mapping: Mapping[str, Any], *, ttl: float | None = None) -> bool:
        """Store records (``ttl`` <= 0 deletes them). True if every one reached Redis
        (memory-only: was stored). A failed write leaves the previous value in place: unlike
        an entry's, it is not replayed as a delete (no process holds a copy to drop)."""
        now = self.clock()
        made = {key: self._record_entry(value, ttl, now) for key, value in mapping.items()}
        done = True
        expired = [key for key, entry in made.items() if entry is None]
        if expired:
            done = await self.ainvalidate_records(expired)
        entries = {key: entry for key, entry in made.items() if entry is not None}
        if not entries:
            return done
        store = self._record_store
        if store is not None:
            for key, entry in entries.items():
                store.set(key, entry)
            return done and all(store.get(key) is entry for key, entry in entries.items())
        shared = self.shared
        assert shared is not None
        items = []
        for key, entry in entries.items():
            rkey = self.keyspace.record(key)
            items.append((rkey, self._encode(rkey, entry, []), entry.ttl_ms(now)))
        return await shared.astore_records(items) and done

    async def ainsert_record(self, key: str, value: Any, ttl: float | None = None) -> bool | None:
        """Store a record only if ``key`` holds none (SET NX): True stored, False taken, None
        Redis could not be asked (not to be taken for "taken")."""
        now = self.clock()
        entry = self._record_entry(value, ttl, now)
        if entry is None:
            return False
        store = self._record_store
        if store is not None:
            with self._add_lock:
                current = store.get(key)
                if current is not None and now < current.fresh_until:
                    return False
                store.set(key, entry)
                return store.get(key) is entry
        shared = self.shared
        assert shared is not None
        rkey = self.keyspace.record(key)
        blob = self._encode(rkey, entry, [])
        px = entry.ttl_ms(now)
        stored = await shared.astore_record(rkey, blob, px, nx=True)
        if stored is False:
            # Taken, unless what is there is unreadable (forged, another secret or serializer):
            # remove exactly that blob, then try once more.
            row = await shared.aread_one(rkey, ())
            if row is None:
                return None
            if row[0] is not None:
                current = self._decode_record(rkey, row[0])
                if current is not None and self.clock() < current.fresh_until:
                    return False
                if not await shared.adelete_if(rkey, row[0]):
                    return False
            stored = await shared.astore_record(rkey, blob, px, nx=True)
        return stored

    async def areplace_record(self, key: str, value: Any, ttl: float | None = None) -> bool | None:
        """Store a record only if ``key`` holds one (SET XX): True replaced, False absent (a
        deleted or rotated session is never brought back by a late save), None Redis could
        not be asked. ``ttl`` <= 0 deletes it."""
        now = self.clock()
        entry = self._record_entry(value, ttl, now)
        store = self._record_store
        if store is not None:
            with self._add_lock:
                current = store.get(key)
                if current is None or now >= current.fresh_until:
                    return False
                if entry is None:
                    return store.delete(key)
                store.set(key, entry)
                return store.get(key) is entry
        if entry is None:
            return await self.ainvalidate_records([key])
        shared = self.shared
        assert shared is not None
        rkey = self.keyspace.record(key)
        blob = self._encode(rkey, entry, [])
        return await shared.astore_record(rkey, blob, entry.ttl_ms(now), xx=True)

    async def ainvalidate_records(self, keys: Iterable[str]) -> bool:
        """Delete records. True if Redis was reached (memory-only: always); otherwise they
        are deleted once it is back (never dropped for lack of room: see
        ``layers/_pending.py``), and ``raise_on_error`` raises CacheUnavailable."""
        keys = list(keys)
        store = self._record_store
        if store is not None:
            for key in keys:
                store.delete(key)
            return True
        shared = self.shared
        assert shared is not None
        if not keys:
            return True
        delivered = await shared.adelete_records([self.keyspace.record(k) for k in keys])
        if not delivered:
            self._invalidation_failed(keys)
        return delivered


def _xfetch_due(entry: Entry, now: float, beta: float) -> bool:
    """XFetch (Vattani et al.): refresh early with a probability that grows near expiry."""
    if entry.delta <= 0 or math.isinf(entry.fresh_until):
        return False
    return now - entry.delta * beta * math.log(random.random() or 1e-12) >= entry.fresh_until


def _flatten(tags: tuple[str | Iterable[str], ...]) -> list[str]:
    flat: list[str] = []
    for tag in tags:
        if isinstance(tag, str):
            flat.append(tag)
        else:
            flat.extend(tag)
    return flat
