"""Issue 11, items 6 and 12: a shared cache is signed unless told otherwise, and a secret can be
rotated without losing what was signed with the old one (``secret_key_fallbacks``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from cachekit_core import Cache, ConfigurationError, MemoryLayer, RedisLayer
from cachekit_core.entry import FLAG_SIGNED, HEADER
from cachekit_core.httpcache import HttpCache, Request, Response, ViewOptions

KEY = "signing-test-secret"
OLD = "signing-test-old-secret"
NOWHERE = "redis://127.0.0.1:1/0"  # constructing does no I/O: nothing listens there
MISSING = object()


@pytest.fixture
def r(redis_url: str) -> Any:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# ------------------------------------------------------------------ signed by default (11.6)
@pytest.mark.parametrize(
    "build",
    [
        lambda: Cache.from_url(NOWHERE),
        lambda: Cache.from_url(NOWHERE, l1=False),
        lambda: Cache([RedisLayer(NOWHERE)]),
        lambda: Cache([MemoryLayer(), RedisLayer(NOWHERE)]),
        lambda: Cache.from_url(NOWHERE, secret_key=None),
    ],
    ids=["from_url", "from_url-no-l1", "redis-layer", "l1-l2-layers", "secret_key=None"],
)
def test_a_shared_cache_without_a_key_refuses_to_start(build: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        build()
    message = str(raised.value)
    assert "needs secret_key=..." in message
    assert "os.environ" in message  # where a secret comes from
    assert "allow_unsigned=True" in message  # and the knowing opt-out


def test_the_refusal_names_the_namespace() -> None:
    with pytest.raises(ConfigurationError, match="namespace 'shop'"):
        Cache.from_url(NOWHERE, namespace="shop")


@pytest.mark.parametrize("secret", ["", b""])
def test_an_empty_secret_is_refused_not_taken_for_none(secret: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match="secret_key must not be empty"):
        Cache.from_url(NOWHERE, secret_key=secret)
    with pytest.raises(ConfigurationError, match="secret_key must not be empty"):
        Cache(secret_key=secret)


def test_a_memory_only_cache_needs_no_key() -> None:
    for cache in (Cache(), Cache([MemoryLayer()]), Cache([MemoryLayer()], namespace="x")):
        assert cache.secret_key is None
        assert cache.set("k", {"v": 1}) is True
        assert cache.get("k") == {"v": 1}


def test_allow_unsigned_stores_unsigned_entries(redis_url: str, r: Any) -> None:
    with Cache.from_url(redis_url, l1=False, namespace="plain", allow_unsigned=True) as cache:
        assert cache.secret_key is None
        assert cache.set("k", {"v": 1}, ttl=60) is True
        assert cache.get("k") == {"v": 1}
    _, _, flags, _ = HEADER.unpack_from(r.get("plain:e:k"))
    assert not flags & FLAG_SIGNED


def test_a_keyed_cache_signs_even_when_allowed_unsigned(redis_url: str, r: Any) -> None:
    # allow_unsigned permits no key; it never turns signing off for a cache that has one.
    with Cache.from_url(
        redis_url, l1=False, namespace="both", secret_key=KEY, allow_unsigned=True
    ) as cache:
        cache.set("k", 1, ttl=60)
    _, _, flags, _ = HEADER.unpack_from(r.get("both:e:k"))
    assert flags & FLAG_SIGNED


@pytest.mark.parametrize("l1", [False, True], ids=["redis", "l1_l2"])
async def test_a_planted_unsigned_entry_is_a_counted_miss(redis_url: str, l1: bool) -> None:
    # The attacker writes to Redis with cachekit itself, unsigned (what a Redis writer can do).
    planter = Cache.from_url(redis_url, l1=False, namespace="shop", allow_unsigned=True)
    victim = Cache.from_url(redis_url, l1=l1, namespace="shop", secret_key=KEY)
    try:
        planter.set("profile:7", {"is_admin": True}, ttl=60)
        assert planter.get("profile:7") == {"is_admin": True}  # the plant is there
        assert victim.get("profile:7", MISSING) is MISSING
        assert await victim.aget("profile:7", MISSING) is MISSING
        assert victim.stats()["corrupt"] == 2
        # The victim's own value replaces it, and loading is not blocked.
        assert victim.get_or_set("profile:7", lambda: {"is_admin": False}, ttl=60) == {
            "is_admin": False
        }
    finally:
        planter.close()
        await victim.aclose()


async def test_a_redis_writer_cannot_plant_a_page(redis_url: str) -> None:
    planter = Cache.from_url(redis_url, l1=False, namespace="pages", allow_unsigned=True)
    victim = Cache.from_url(redis_url, namespace="pages", secret_key=KEY)
    view = ViewOptions(ttl=60)
    request = Request("GET", "http", "example.com", "/", "", [])
    evil = Response(200, [("Content-Type", "text/html")], b"<script>steal()</script>")
    try:
        planted = HttpCache(planter)
        await planted.astore(await planted.alookup(request, view), evil)
        assert (await planted.alookup(request, view)).response is not None  # the plant is there
        lookup = await HttpCache(victim).alookup(request, view)
        assert lookup.response is None  # a miss: the victim renders its own page
        assert victim.stats()["corrupt"] >= 1
    finally:
        await planter.aclose()
        await victim.aclose()


# --------------------------------------------------------------- key rotation (11.12)
def test_fallback_keys_verify_entries_signed_with_an_old_key(redis_url: str, r: Any) -> None:
    with Cache.from_url(redis_url, l1=False, namespace="rot", secret_key=OLD) as before:
        before.set("k", "signed with the old key", ttl=60)
        before.set("untouched", "old", ttl=60)
    rotated = Cache.from_url(
        redis_url, l1=False, namespace="rot", secret_key=KEY, secret_key_fallbacks=[OLD]
    )
    without = Cache.from_url(redis_url, l1=False, namespace="rot", secret_key=KEY)
    try:
        assert rotated.get("k") == "signed with the old key"
        assert without.get("k", MISSING) is MISSING  # without the fallback: a miss
        assert without.stats()["corrupt"] == 1
        # What is written after the rotation is signed with the new key only.
        rotated.set("k", "signed with the new key", ttl=60)
        assert without.get("k") == "signed with the new key"
        with Cache.from_url(redis_url, l1=False, namespace="rot", secret_key=OLD) as old_only:
            assert old_only.get("k", MISSING) is MISSING
            assert old_only.get("untouched") == "old"
    finally:
        rotated.close()
        without.close()


async def test_fallback_keys_on_the_async_path(redis_url: str) -> None:
    async with Cache.from_url(redis_url, l1=False, namespace="arot", secret_key=OLD) as before:
        await before.aset("k", [1, 2], ttl=60)
    async with Cache.from_url(
        redis_url, namespace="arot", secret_key=b"new", secret_key_fallbacks=(b"x", OLD)
    ) as rotated:
        assert await rotated.aget("k") == [1, 2]
        assert rotated.secret_key == b"new"
        assert rotated.secret_key_fallbacks == (b"x", OLD.encode())


def test_a_fallback_key_is_derived_per_namespace_too(redis_url: str, r: Any) -> None:
    with Cache.from_url(redis_url, l1=False, namespace="ta", secret_key=OLD) as tenant_a:
        tenant_a.set("profile", {"admin": True}, ttl=60)
    r.set("tb:e:profile", r.get("ta:e:profile"))
    with Cache.from_url(
        redis_url, l1=False, namespace="tb", secret_key=KEY, secret_key_fallbacks=[OLD]
    ) as tenant_b:
        assert tenant_b.get("profile", MISSING) is MISSING
        assert tenant_b.stats()["corrupt"] == 1


def test_pickle_with_fallbacks_loads_only_what_a_known_key_signed(redis_url: str) -> None:
    with Cache.from_url(
        redis_url, l1=False, namespace="prot", serializer="pickle", secret_key=OLD
    ) as before:
        before.set("k", {1, 2}, ttl=60)
    with Cache.from_url(
        redis_url, l1=False, namespace="prot", serializer="pickle", secret_key="attacker"
    ) as forger:
        forger.set("forged", {3}, ttl=60)
    with Cache.from_url(
        redis_url,
        l1=False,
        namespace="prot",
        serializer="pickle",
        secret_key=KEY,
        secret_key_fallbacks=[OLD],
    ) as rotated:
        assert rotated.get("k") == {1, 2}
        assert rotated.get("forged", MISSING) is MISSING


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"secret_key_fallbacks": [OLD]}, "pass the current one as secret_key"),
        ({"secret_key": KEY, "secret_key_fallbacks": OLD}, "a list of older secrets"),
        ({"secret_key": KEY, "secret_key_fallbacks": [OLD, ""]}, "must not hold an empty"),
        ({"secret_key": 42}, "str or bytes, not int"),
        ({"secret_key": KEY, "secret_key_fallbacks": [None]}, "str or bytes, not NoneType"),
    ],
    ids=["fallbacks-without-key", "one-string", "empty-fallback", "int-key", "none-fallback"],
)
def test_bad_key_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Cache.from_url(NOWHERE, **options)
    with pytest.raises(ConfigurationError, match=message):
        Cache(**options)


# ------------------------------------------------------------------------ SECURITY.md's ACL
def test_the_acl_security_md_recommends_is_enough(redis_url: str, r: Any) -> None:
    """``+@all -@dangerous`` on ``~ns:* &ns:*``: every engine feature works under it."""
    r.execute_command(
        "ACL", "SETUSER", "ckdoc", "reset", "on", ">s3cret", "resetkeys", "~doc:*",
        "resetchannels", "&doc:*", "+@all", "-@dangerous",
    )  # fmt: skip
    r.execute_command("ACL", "LOG", "RESET")
    url = redis_url.replace("redis://", "redis://ckdoc:s3cret@")
    try:
        for l1 in (True, False):
            with Cache.from_url(url, l1=l1, namespace="doc", secret_key=KEY) as cache:
                cache.set("k", 1, ttl=60, tags=["t"])
                assert cache.get("k") == 1
                assert cache.get_or_set("loaded", lambda: "v", ttl=60, tags=["t"]) == "v"
                cache.invalidate_tags("t")
                assert cache.get("k", MISSING) is MISSING
                assert cache.add("n", 1, ttl=60) is True
                assert cache.incr("n") == 2
                token = cache.claim("job", 5)
                assert token is not None
                cache.release("job", token)
                assert cache.delete("n") is True
                flushed: list[Any] = []
                queue = cache.write_behind("w", flushed.extend, interval=0.05, min_idle=0)
                queue.submit("row", 1)
                stop = threading.Event()
                worker = threading.Thread(target=queue.run_worker, args=(stop,))
                worker.start()
                deadline = time.monotonic() + 5
                while not flushed and time.monotonic() < deadline:
                    time.sleep(0.01)
                stop.set()
                worker.join()
                assert flushed == [("row", 1)]
                if l1:  # the invalidation listener subscribed to its channel
                    while not cache.stats()["layers"]["redis"]["listening"]:
                        assert time.monotonic() < deadline
                        time.sleep(0.01)
                cache.clear()
                stats = cache.stats()
                assert (stats["errors"], stats["invalidation_errors"]) == (0, 0)
        assert r.execute_command("ACL", "LOG") == []  # nothing was denied
    finally:
        r.execute_command("ACL", "DELUSER", "ckdoc")
