"""Redis I/O of the shared layer. Every call goes through ``_arun``: breaker, timeouts,
replay of lost invalidations, and fail-open error handling live there and only there."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import msgpack

from .. import tracing
from ..entry import tag_keys_of
from ..keys import STREAM
from ..layers._redis_base import (
    BUMP_SCRIPT,
    DELETE_IF_SCRIPT,
    READ_SCRIPT,
    REDIS_ERRORS,
    RELEASE_SCRIPT,
    AsyncOp,
    NoScriptError,
    Pending,
    RedisBase,
    Row,
)

if TYPE_CHECKING:
    from ..layers._redis_base import AsyncRedisClient

T = TypeVar("T")


async def _aeval(client: AsyncRedisClient, script: str, keys: list[str], args: list[Any]) -> Any:
    """EVALSHA, loading the script on NOSCRIPT (e.g. after a Redis restart)."""
    sha = _sha(script)
    try:
        return await client.evalsha(sha, len(keys), *keys, *args)
    except NoScriptError:
        return await client.eval(script, len(keys), *keys, *args)


_SHAS: dict[str, str] = {}


def _sha(script: str) -> str:
    sha = _SHAS.get(script)
    if sha is None:
        from hashlib import sha1

        sha = _SHAS[script] = sha1(script.encode()).hexdigest()
    return sha


class AsyncRedisOps(RedisBase):
    async def _arun(
        self,
        op: AsyncOp[T],
        lost: Callable[[], None] | None = None,
        operation: str = "",
        batch: int = 0,
    ) -> T | None:
        """Run ``op`` on a client; None when Redis is unavailable (or raise, if configured).

        ``lost`` records what a failed invalidating write must replay later; it runs before
        any CacheUnavailable is raised, so ``raise_on_error`` never drops an invalidation.
        ``operation`` names the span of ``op`` (see tracing.py; "" for none), ``batch`` the
        number of commands it pipelines.
        """
        if self.breaker._open_until and not self.breaker.allow():
            if lost is not None:
                lost()
            self._unavailable()
            return None
        client = self._aclient()
        try:
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
            self._failed(exc)
            return None
        if elapsed > self.slow_call and operation != "SCAN":  # clear() scans: slow by nature
            self._slow(elapsed)
        else:
            self.breaker.success()
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
        except BaseException:
            # Still not delivered: merge back so the next attempt retries them.
            self.pending.tags |= pending.tags
            self.pending.keys.update(pending.keys)
            self.pending.any = True
            self.pending.clear = self.pending.clear or pending.clear
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
        On asyncio, RedisLayer lets concurrent calls share a round trip (layers/_read_batch.py).
        """

        async def op(client: AsyncRedisClient) -> Row:
            # decode_responses is off: redis-py's `bytes | str` is always bytes here.
            if not tag_keys:
                return cast(Row, [await client.get(key)])
            if self.cluster:  # the entry and its tags live in different slots
                return await self._aget_each(client, [key, *tag_keys])
            return cast(Row, await client.mget(key, *tag_keys))

        operation = "GET" if not tag_keys else "PIPELINE" if self.cluster else "MGET"
        return await self._arun(op, operation=operation)

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

    async def awrite(self, items: list[tuple[str, str, bytes, int | None]], origin: str) -> bool:
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
            await self._arun(op, lambda: self.remember(keys=lost), "PIPELINE", len(items) + 1)
        )

    async def aadd(self, key: str, blob: bytes, px: int | None, changed: str, origin: str) -> bool:
        """SET NX: store only if absent. False when present or unavailable."""

        async def op(client: AsyncRedisClient) -> bool:
            pipe = client.pipeline(transaction=False)
            pipe.set(key, blob, px=px, nx=True)
            message = self._message("k", [changed], origin)
            [stored] = await self._aexecute_and_publish(client, pipe, message)
            return bool(stored)

        return bool(await self._arun(op, operation="PIPELINE", batch=2))

    async def adelete_if(self, key: str, blob: bytes) -> bool:
        """Delete ``key`` only if it still holds exactly ``blob``."""

        async def op(client: AsyncRedisClient) -> bool:
            return bool(await _aeval(client, DELETE_IF_SCRIPT, [key], [blob]))

        return bool(await self._arun(op, operation="EVALSHA"))

    async def adelete(self, keys: dict[str, str], origin: str) -> int | None:
        """Delete redis keys (mapped to the user keys other processes drop from L1)."""

        async def op(client: AsyncRedisClient) -> int:
            return await self._adelete_on(client, keys, origin)

        return await self._arun(op, lambda: self.remember(keys=keys), "PIPELINE", len(keys) + 1)

    async def _adelete_on(
        self, client: AsyncRedisClient, keys: dict[str, str], origin: str = ""
    ) -> int:
        pipe = client.pipeline(transaction=False)
        for key in keys:  # one DEL per key: on a cluster the keys live in different slots
            pipe.delete(key)
        message = self._message("k", list(keys.values()), origin)
        return sum(await self._aexecute_and_publish(client, pipe, message))

    async def _aexecute_and_publish(
        self, client: AsyncRedisClient, pipe: Any, message: bytes
    ) -> list[Any]:
        """Run ``pipe``, then tell other processes; the replies of ``pipe``'s own commands.

        One round trip on a single server. redis-py refuses PUBLISH inside a cluster
        pipeline, so there it follows the writes: still after them, as L1 requires.
        """
        if self.cluster:
            replies: list[Any] = await pipe.execute()
            await client.publish(self.ks.channel, message)
            return replies
        pipe.publish(self.ks.channel, message)
        return list((await pipe.execute())[:-1])

    # -- tags ----------------------------------------------------------------------------------
    async def atag_versions(self, tag_keys: list[str]) -> list[int] | None:
        async def op(client: AsyncRedisClient) -> list[int]:
            values = await client.mget(tag_keys)
            return [int(v) if v is not None else 0 for v in values]

        return await self._arun(op, operation="MGET")

    async def abump_tags(self, tag_keys: list[str], origin: str) -> bool:
        async def op(client: AsyncRedisClient) -> bool:
            await self._abump_on(client, tag_keys, origin)
            return True

        return bool(await self._arun(op, lambda: self.remember(tags=tag_keys), "EVALSHA"))

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
        async def op(client: AsyncRedisClient) -> bool:
            await self._aclear_on(client, origin)
            return True

        # One SCAN span for the whole scan, its UNLINKs and the broadcast.
        return bool(await self._arun(op, lambda: self.remember(clear=True), "SCAN"))

    async def _aclear_on(self, client: AsyncRedisClient, origin: str = "") -> None:
        # SCAN + UNLINK of this namespace only: never FLUSHDB, never KEYS. Write-behind streams
        # are kept: they hold writes not yet in the store, not cached copies.
        streams = f"{self.ks.prefix}{STREAM}:".encode()
        batch: list[Any] = []
        async for key in client.scan_iter(match=self.ks.scan_pattern(), count=1000):
            if key.startswith(streams):
                continue
            batch.append(key)
            if len(batch) >= 500:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
        await client.publish(self.ks.channel, self._message("c", [], origin))

    # -- bookkeeping ---------------------------------------------------------------------------
    def remember(
        self,
        *,
        tags: list[str] | None = None,
        keys: dict[str, str] | None = None,
        clear: bool = False,
    ) -> None:
        """Queue invalidations that could not reach Redis, to replay before the next call."""
        pending = self.pending
        if clear:
            pending.overflowed()
            return
        pending.tags.update(tags or ())
        pending.keys.update(keys or {})
        pending.any = True
        if len(pending.tags) + len(pending.keys) > Pending.LIMIT:
            pending.overflowed()
