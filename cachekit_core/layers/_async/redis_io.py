"""Redis I/O of the shared layer, written once as async code (``_sync/redis_io.py`` is generated).

Every call goes through ``_arun``: the breaker, connection permits, timeouts, the replay of
lost invalidations and fail-open error handling live there and only there. The state it works
on belongs to parts the layer holds (``layers/redis.py``): ``clients``, ``health`` (breaker and
counters), ``pending``, ``permits`` and ``batcher``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import msgpack

from ... import tracing
from ...entry import tag_keys_of
from ...keys import KeySpace
from .._batch import ReadBatcher
from .._clients import Clients
from .._health import Health
from .._pending import Pending
from .._permits import Permits
from .._shared import (
    BUMP_SCRIPT,
    DELETE_IF_SCRIPT,
    DELETE_SCRIPT,
    READ_SCRIPT,
    REDIS_ERRORS,
    RELEASE_SCRIPT,
    WRITE_IF_SCRIPT,
    AsyncOp,
    NoScriptError,
    sha_of,
)
from ..base import BAD_VERSION, Item, Row
from ..topology import Topology

if TYPE_CHECKING:
    from .._shared import AsyncRedisClient

T = TypeVar("T")


async def _aeval(client: AsyncRedisClient, script: str, keys: list[str], args: list[Any]) -> Any:
    """EVALSHA, loading the script on NOSCRIPT (e.g. after a Redis restart)."""
    try:
        return await client.evalsha(sha_of(script), len(keys), *keys, *args)
    except NoScriptError:
        return await client.eval(script, len(keys), *keys, *args)


class AsyncRedisIO:
    # The parts and settings, set by RedisLayer.__init__.
    url: str
    topology: Topology
    options: dict[str, Any]
    clients: Clients
    health: Health
    pending: Pending
    permits: Permits
    batcher: ReadBatcher
    cluster: bool
    tag_ttl: int
    tombstone_ms: int  # how long a delete's tombstone is kept (set by bind)
    keys: KeySpace | None

    @property
    def ks(self) -> KeySpace:
        assert self.keys is not None, "RedisLayer used before Cache bound it"
        return self.keys

    async def _arun(
        self,
        op: AsyncOp[T],
        lost: Callable[[], object] | None = None,
        operation: str = "",
        batch: int = 0,
    ) -> T | None:
        """Run ``op`` on a client; None when Redis is unavailable (or raise, if configured).

        ``lost`` records what a failed invalidating write must replay later; it runs before
        any CacheUnavailable is raised, so ``raise_on_error`` never drops an invalidation.
        ``operation`` names the span of ``op`` (see tracing.py; "" for none), ``batch`` the
        number of commands it pipelines.
        """
        health = self.health
        breaker = health.breaker
        if breaker.open_until:
            if not breaker.allow():
                if lost is not None:
                    lost()
                health.skipped_call()
                return None
            permits = None  # a lone probe: it takes no permit
        else:
            try:
                permits = await self.permits.aacquire()
            except TimeoutError:
                if lost is not None:
                    lost()
                health.failed(TimeoutError(f"no free connection in {self.permits.timeout} s"))
                return None
        try:
            client = self.clients.for_loop()
            if self.pending.any:
                await self._apush_pending(client)
            spans = tracing.SPANS
            started = time.monotonic()
            if spans is None or not operation or not spans.on():
                result = await op(client)
            else:
                with spans.redis(self, operation, batch):
                    result = await op(client)
            elapsed = time.monotonic() - started
        except REDIS_ERRORS as exc:
            if lost is not None:
                lost()
            health.failed(exc)
            return None
        finally:
            if permits is not None:
                permits.release()
        if elapsed > health.slow_call and operation != "SCAN":  # clear() scans: slow by nature
            health.slow(elapsed)
        else:
            breaker.success()
        return result

    async def _apush_pending(self, client: AsyncRedisClient) -> None:
        pending, self.pending = self.pending, Pending()
        try:
            if pending.clear:
                await self._aclear_on(client)
            if pending.tags:
                await self._abump_on(client, sorted(pending.tags))
            if pending.keys:
                await self._adelete_on(client, pending.keys)
            if pending.records:
                await self._adelete_records_on(client, sorted(pending.records))
        except BaseException:
            self.pending.merge(pending)  # still not delivered: the next attempt retries them
            raise

    def _message(self, kind: str, items: list[str], origin: str) -> bytes:
        # surrogatepass: any str is a valid key, lone surrogates included.
        message: bytes = msgpack.packb(
            [origin, kind, items], use_bin_type=True, unicode_errors="surrogatepass"
        )
        return message

    # -- entries -----------------------------------------------------------------------------
    async def aread_one(self, key: str, tag_keys: tuple[str, ...]) -> Row | None:
        """One entry and the current versions of ``tag_keys``: a plain GET or one MGET.

        No Lua on the hot path: a script call costs several microseconds on its own, more
        than the rest of a hit. The caller checks that ``tag_keys`` are the entry's tags.
        On asyncio, concurrent calls share a round trip (``layers/_batch.py``).
        """
        return await self.batcher.aread(self._aread_row, key, tag_keys)

    async def _aread_row(self, key: str | None, tag_keys: tuple[str, ...]) -> Row | None:
        """The values of ``key`` (if given) and ``tag_keys`` in one round trip."""

        async def op(client: AsyncRedisClient) -> Row:
            # decode_responses is off: redis-py's `bytes | str` is always bytes here.
            if not tag_keys and key is not None:
                return cast(Row, [await client.get(key)])
            keys = list(tag_keys) if key is None else [key, *tag_keys]
            if self.cluster and key is not None:  # the entry and its tags live in other slots
                return await self._aget_each(client, keys)
            return cast(Row, await client.mget(keys))

        if not tag_keys and key is not None:
            operation = "GET"
        else:
            operation = "PIPELINE" if self.cluster and key is not None else "MGET"
        return await self._arun(op, operation=operation)

    async def _amget(self, keys: list[str]) -> Row | None:
        """The values of ``keys`` (entries and tag keys) in one round trip: a read batch."""

        async def op(client: AsyncRedisClient) -> Row:
            if self.cluster:  # the keys live in different slots
                return await self._aget_each(client, keys)
            return cast(Row, await client.mget(keys))

        if self.cluster:
            return await self._arun(op, operation="PIPELINE", batch=len(keys))
        return await self._arun(op, operation="MGET")

    async def aread(self, keys: list[str]) -> list[Row | None] | None:
        """Entries for ``keys`` (redis keys) with their tags' current versions, one round trip."""

        async def op(client: AsyncRedisClient) -> list[Row | None]:
            if self.cluster:
                return await self._aread_cluster(client, keys)
            rows: list[Row | None] = await _aeval(client, READ_SCRIPT, keys, [self.ks.tag_prefix])
            return rows

        return await self._arun(op, operation="PIPELINE" if self.cluster else "EVALSHA")

    async def _aread_cluster(self, client: AsyncRedisClient, keys: list[str]) -> list[Row | None]:
        """READ_SCRIPT's rows without Lua, whose keys must share a slot: the entries in one
        pipeline (redis-py sends it to every node at once), then their tags in one MGET (all
        tag keys of a namespace share a slot)."""
        blobs = await self._aget_each(client, keys)
        wanted = {blob: tag_keys_of(blob, self.ks.tag_prefix) for blob in blobs if blob}
        tag_keys = sorted({t for tags in wanted.values() if tags for t in tags})
        versions: dict[str, bytes | None] = {}
        if tag_keys:
            versions = dict(zip(tag_keys, cast(Row, await client.mget(tag_keys)), strict=True))
        rows: list[Row | None] = []
        for blob in blobs:
            if blob is None:
                rows.append(None)
                continue
            tags = wanted[blob]
            if tags is None:
                rows.append([blob, b"!"])  # as the script does: a header it will not follow
            else:
                rows.append([blob, *(versions[t] or b"0" for t in tags)])
        return rows

    async def _aget_each(self, client: AsyncRedisClient, keys: list[str]) -> Row:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        return cast(Row, await pipe.execute())

    async def awrite(self, items: list[Item], origin: str) -> bool:
        """SET each (redis key, user key, blob, ttl ms); other processes drop the user keys."""

        async def op(client: AsyncRedisClient) -> bool:
            pipe = client.pipeline(transaction=False)
            for key, _, blob, px in items:
                pipe.set(key, blob, px=px)
            changed = [user_key for _, user_key, _, _ in items]
            await self._aexecute_and_publish(client, pipe, self._message("k", changed, origin))
            return True

        # If this fails, Redis still holds the old value and other processes' L1 may too:
        # delete and broadcast once Redis is back, or they would serve it after the outage.
        lost = {key: user_key for key, user_key, _, _ in items}
        return bool(
            await self._arun(op, lambda: self.pending.add(keys=lost), "PIPELINE", len(items) + 1)
        )

    async def awrite_if(self, items: list[Item], origin: str, since: int) -> list[bool] | None:
        """``awrite`` of values computed from reads made at ``since`` (microseconds): each is
        stored unless its key was deleted after that (its tombstone is newer). Per item:
        stored or refused; None when Redis could not be asked (then, as for ``awrite``, the
        keys are deleted once it is back)."""

        async def op(client: AsyncRedisClient) -> list[bool]:
            ks = self.ks
            calls = [
                ([key, ks.tombstone(key)], [blob, "" if px is None else px, since])
                for key, _, blob, px in items
            ]
            changed = [user_key for _, user_key, _, _ in items]
            message = self._message("k", changed, origin)
            replies = await self._aeval_pipelined(client, WRITE_IF_SCRIPT, calls, message)
            return [bool(reply) for reply in replies]

        lost = {key: user_key for key, user_key, _, _ in items}
        return await self._arun(op, lambda: self.pending.add(keys=lost), "PIPELINE", len(items) + 1)

    async def _aeval_pipelined(
        self,
        client: AsyncRedisClient,
        script: str,
        calls: list[tuple[list[str], list[Any]]],
        message: bytes,
    ) -> list[Any]:
        """One EVALSHA of ``script`` per call in one pipeline, then ``message`` published; the
        scripts' replies. On NOSCRIPT (a restarted server) the script is loaded and the calls
        it refused are sent again (and the message with them: after the writes, as L1 needs).
        """
        sha = sha_of(script)

        def pipeline(indices: list[int]) -> Any:
            pipe = client.pipeline(transaction=False)
            for i in indices:
                keys, args = calls[i]
                pipe.evalsha(sha, len(keys), *keys, *args)
            return pipe

        replies = await self._aexecute_and_publish(
            client, pipeline(list(range(len(calls)))), message, raise_on_error=False
        )
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            await client.script_load(script)
            again = await self._aexecute_and_publish(client, pipeline(missing), message)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    async def aadd(
        self, key: str, blob: bytes, px: int | None, changed: str, origin: str
    ) -> bool | None:
        """SET NX: store only if absent. False when present, None when unavailable."""

        async def op(client: AsyncRedisClient) -> bool:
            pipe = client.pipeline(transaction=False)
            pipe.set(key, blob, px=px, nx=True)
            message = self._message("k", [changed], origin)
            [stored] = await self._aexecute_and_publish(client, pipe, message)
            return bool(stored)

        return await self._arun(op, operation="PIPELINE", batch=2)

    async def areplace(
        self, key: str, blob: bytes, px: int | None, changed: str, origin: str
    ) -> bool | None:
        """SET XX: store only if present. False when absent, None when unavailable."""

        async def op(client: AsyncRedisClient) -> bool:
            pipe = client.pipeline(transaction=False)
            pipe.set(key, blob, px=px, xx=True)
            message = self._message("k", [changed], origin)
            [stored] = await self._aexecute_and_publish(client, pipe, message)
            return bool(stored)

        return await self._arun(op, operation="PIPELINE", batch=2)

    async def adelete_if(self, key: str, blob: bytes) -> bool:
        """Delete ``key`` only if it still holds exactly ``blob``."""

        async def op(client: AsyncRedisClient) -> bool:
            return bool(await _aeval(client, DELETE_IF_SCRIPT, [key], [blob]))

        return bool(await self._arun(op, operation="EVALSHA"))

    async def adelete(self, keys: dict[str, str], origin: str) -> int | None:
        """Delete entries (redis keys mapped to the user keys other processes drop from L1),
        each leaving a tombstone that refuses a value computed before the delete."""

        async def op(client: AsyncRedisClient) -> int:
            return await self._adelete_on(client, keys, origin)

        return await self._arun(op, lambda: self.pending.add(keys=keys), "PIPELINE", len(keys) + 1)

    async def _adelete_on(
        self, client: AsyncRedisClient, keys: dict[str, str], origin: str = ""
    ) -> int:
        # One script per key (an entry and its tombstone share a slot; keys do not).
        now_us = time.time_ns() // 1000  # the clock of tag versions and snapshots (results.py)
        ks, keep = self.ks, self.tombstone_ms
        calls = [([key, ks.tombstone(key)], [now_us, keep]) for key in keys]
        message = self._message("k", list(keys.values()), origin)
        return sum(await self._aeval_pipelined(client, DELETE_SCRIPT, calls, message))

    async def _aexecute_and_publish(
        self, client: AsyncRedisClient, pipe: Any, message: bytes, *, raise_on_error: bool = True
    ) -> list[Any]:
        """Run ``pipe``, then tell other processes; the replies of ``pipe``'s own commands
        (errors among them as exceptions, with ``raise_on_error=False``).

        One round trip on a single server. redis-py refuses PUBLISH inside a cluster
        pipeline, so there it follows the writes: still after them, as L1 requires.
        """
        if self.cluster:
            replies: list[Any] = await pipe.execute(raise_on_error=raise_on_error)
            await client.publish(self.ks.channel, message)
            return replies
        pipe.publish(self.ks.channel, message)
        return list((await pipe.execute(raise_on_error=raise_on_error))[:-1])

    # -- records: kept, never owned (see Engine.records) ---------------------------------------
    async def astore_records(self, items: list[tuple[str, bytes, int | None]]) -> bool:
        """SET each (record key, blob, ttl ms). Nothing is published (no process keeps a
        record in L1) and nothing is queued if it fails: Redis then still holds the previous
        value, which is what the caller, told False, expects."""

        async def op(client: AsyncRedisClient) -> bool:
            pipe = client.pipeline(transaction=False)
            for key, blob, px in items:
                pipe.set(key, blob, px=px)
            await pipe.execute()
            return True

        return bool(await self._arun(op, operation="PIPELINE", batch=len(items)))

    async def astore_record(
        self, key: str, blob: bytes, px: int | None, *, nx: bool = False, xx: bool = False
    ) -> bool | None:
        """SET NX / SET XX of one record: True stored, False refused, None unavailable."""

        async def op(client: AsyncRedisClient) -> bool:
            return bool(await client.set(key, blob, px=px, nx=nx, xx=xx))

        return await self._arun(op, operation="SET")

    async def adelete_records(self, keys: list[str]) -> bool:
        """Delete records; if Redis cannot be asked, once it is back (never more than these:
        see ``_pending.py``). True if Redis was reached."""

        async def op(client: AsyncRedisClient) -> bool:
            await self._adelete_records_on(client, keys)
            return True

        return bool(
            await self._arun(op, lambda: self.pending.add(records=keys), "PIPELINE", len(keys))
        )

    async def _adelete_records_on(self, client: AsyncRedisClient, keys: list[str]) -> None:
        pipe = client.pipeline(transaction=False)
        for key in keys:  # one DEL per key: on a cluster the keys live in different slots
            pipe.delete(key)
        await pipe.execute()

    # -- tags ----------------------------------------------------------------------------------
    async def atag_versions(self, tag_keys: list[str]) -> list[int] | None:
        """The current versions of ``tag_keys`` (batched with other reads on asyncio)."""
        values = await self.batcher.aread(self._aread_row, None, tuple(tag_keys))
        return None if values is None else [_version(v) for v in values]

    async def abump_tags(self, tag_keys: list[str], origin: str) -> bool:
        async def op(client: AsyncRedisClient) -> bool:
            await self._abump_on(client, tag_keys, origin)
            return True

        return bool(await self._arun(op, lambda: self.pending.add(tags=tag_keys), "EVALSHA"))

    async def _abump_on(
        self, client: AsyncRedisClient, tag_keys: list[str], origin: str = ""
    ) -> None:
        now_us = int(time.time() * 1_000_000)
        message = self._message("t", tag_keys, origin)
        await _aeval(
            client, BUMP_SCRIPT, tag_keys, [now_us, self.tag_ttl, self.ks.channel, message]
        )

    # -- locks ---------------------------------------------------------------------------------
    async def aacquire(self, lock_key: str, token: str, px: int) -> bool | None:
        """Try to take the lock once: True, False (held elsewhere), None (unavailable)."""

        async def op(client: AsyncRedisClient) -> bool:
            return bool(await client.set(lock_key, token, px=px, nx=True))

        return await self._arun(op, operation="SET")

    async def arelease(self, lock_key: str, token: str) -> None:
        async def op(client: AsyncRedisClient) -> None:
            await _aeval(client, RELEASE_SCRIPT, [lock_key], [token])

        await self._arun(op, operation="EVALSHA")

    # -- namespace -----------------------------------------------------------------------------
    async def aclear(self, origin: str) -> bool:
        """Delete every entry of the namespace, and tell other processes to drop their L1."""

        async def op(client: AsyncRedisClient) -> bool:
            await self._aclear_on(client, origin)
            return True

        # One SCAN span for the whole scan, its UNLINKs and the broadcast.
        return bool(await self._arun(op, lambda: self.pending.add(clear=True), "SCAN"))

    async def _aclear_on(self, client: AsyncRedisClient, origin: str = "") -> None:
        # SCAN + UNLINK of this namespace's *entries* only: never FLUSHDB, never KEYS, and never
        # anything the cache does not own outright: records (sessions) and write-behind
        # streams hold data that exists nowhere else. Tag versions, locks and tombstones stay
        # too (they only ever expire): locks held by loaders keep guarding them, tombstones
        # keep refusing values computed before a delete.
        batch: list[Any] = []
        async for key in client.scan_iter(match=self.ks.entry_pattern(), count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
        await client.publish(self.ks.channel, self._message("c", [], origin))

    async def areplay(self) -> None:
        """Push pending invalidations now (after the listener resubscribed), not on the next
        call."""
        if self.pending:
            await self._arun(_anothing)


async def _anothing(client: AsyncRedisClient) -> None:
    return None


def _version(value: bytes | None) -> int:
    """A tag version as stored (absent: 0); BAD_VERSION for anything else someone wrote there,
    which the engine counts as corrupt and never matches."""
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        return BAD_VERSION
