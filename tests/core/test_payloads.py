"""Hostile input: what someone who can write to Redis (or pick the keys) can do to cachekit.

Every test talks to the private server of the ``redis_url`` fixture, writes forged bytes with a
plain redis-py client, and reads them through a ``Cache``. Positive controls (a correctly signed
exploit *does* run, a correctly built bomb *does* decode under a large limit, the ACL user *is*
denied outside its prefix) show that each payload is live, so a pass means the defence worked.
"""

from __future__ import annotations

import hmac
import os
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from hashlib import blake2b, sha256
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cachekit_core import (
    Cache,
    ConfigurationError,
    MemoryLayer,
    RedisLayer,
    SerializationError,
)
from cachekit_core.entry import (
    FLAG_COMPRESSED,
    FLAG_SIGNED,
    FORMAT_VERSION,
    HEADER,
    MAC_SIZE,
    MAGIC,
    SERIALIZER_SHIFT,
    Codec,
    Entry,
)
from cachekit_core.keys import KeySpace
from cachekit_core.serializers import (
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
)

redis = pytest.importorskip("redis")

KEY = b"test-secret-key"
NOW = 1_700_000_000.0  # the fixed clock of writers and readers: blobs are byte-for-byte stable
TTL = 3600  # real seconds too (Redis PX): nothing expires while a test runs
MISSING = object()
REDIS_CONFIGS = ["redis", "l1_l2"]
ALL_CONFIGS = ["memory", *REDIS_CONFIGS]


def clock() -> float:
    return NOW


def make_cache(config: str, url: str | None, **options: Any) -> Cache:
    options.setdefault("clock", clock)
    if config == "memory":
        return Cache([MemoryLayer(maxsize=10_000)], **options)
    assert url is not None
    if not options.get("allow_unsigned"):
        options.setdefault("secret_key", KEY)  # a shared cache is signed unless told otherwise
    return Cache.from_url(url, l1=config == "l1_l2", **options)


def wait_listening(cache: Cache) -> None:
    """Wait until the invalidation listener of an L1+L2 cache has subscribed."""
    deadline = time.monotonic() + 3
    while not cache.stats()["layers"]["redis"]["listening"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.stats()["layers"]["redis"]["listening"]


@pytest.fixture
def r(redis_url: str) -> Iterator[Any]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def caches() -> Iterator[list[Cache]]:
    """Caches appended here are closed after the test (listener threads, sockets)."""
    made: list[Cache] = []
    yield made
    for cache in made:
        cache.close()


def entry_key(namespace: str, secret: bytes = KEY) -> bytes:
    """The key a cache of ``namespace`` built with ``secret`` signs its entries with: its
    own, derived one-way, so that no namespace's signature verifies in another."""
    return hmac.new(secret, b"cachekit-key\0entries:" + namespace.encode(), sha256).digest()


def codec(serializer: Serializer, namespace: str, **options: Any) -> Codec:
    """The codec of a cache of ``namespace`` built with ``secret_key=KEY``."""
    return Codec(serializer, entry_key(namespace), **options)


def sign(head: bytes, body: bytes, name: str = "victim", namespace: str = "pl") -> bytes:
    """An envelope exactly as a cache of ``namespace`` lays it out for the key ``name``:
    header+tags | MAC(stored key, header+tags+body) | body."""
    stored = f"{namespace}:e:{name}".encode("utf-8", "surrogatepass")
    mac = hmac.new(entry_key(namespace), stored + b"\0" + head + body, sha256)
    return head + mac.digest() + body


def split(blob: bytes) -> tuple[bytes, bytes, bytes]:
    """(header with tag keys, MAC, body) of a signed envelope."""
    taglen = HEADER.unpack_from(blob)[3]
    start = HEADER.size + taglen
    return blob[:start], blob[start : start + MAC_SIZE], blob[start + MAC_SIZE :]


# -- (a) corrupted, truncated, bit-flipped, unsigned, wrong-version, wrong-serializer bytes ------


@pytest.fixture
def good_blobs(redis_url: str, r: Any) -> dict[str, bytes]:
    """Valid signed envelopes, written by cachekit itself: with and without tag keys."""
    writer = make_cache("redis", redis_url, namespace="pl", secret_key=KEY)
    try:
        writer.set("plain", {"v": 1}, ttl=TTL)
        writer.set("tagged", [1, 2, 3], ttl=TTL, tags=["t1", "t 2"])
    finally:
        writer.close()
    blobs = {"plain": r.get("pl:e:plain"), "tagged": r.get("pl:e:tagged")}
    assert all(blobs.values())
    return blobs


def hostile_variants(blobs: dict[str, bytes]) -> dict[str, bytes]:
    plain, tagged = blobs["plain"], blobs["tagged"]
    head, mac, body = split(plain)
    value = Entry({"v": 666}, NOW + TTL, NOW + TTL)
    variants = {
        "empty": b"",
        "random": os.urandom(64),
        "not an envelope": msgpack.packb({"v": 666}),
        "body overwritten": head + mac + bytes(len(body)),
        "mac zeroed": head + bytes(MAC_SIZE) + body,
        "byte appended": plain + b"\x00",
        "byte prepended": b"\x00" + plain,
        "body swapped in": head + mac + split(tagged)[2],
        "retagged": split(tagged)[0] + mac + body,
        "unsigned (codec without key)": Codec(MsgpackSerializer()).encode(value, []),
        "signed flag, no mac": HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_SIGNED, 0) + body,
        "signed with another key": Codec(MsgpackSerializer(), b"other key").encode(
            value, [], "victim"
        ),
        "signed for another key name": codec(MsgpackSerializer(), "pl").encode(
            value, [], "pl:e:plain"
        ),
        "signed for another namespace": codec(MsgpackSerializer(), "other").encode(
            value, [], "other:e:victim"
        ),
        "signed with the secret itself": Codec(MsgpackSerializer(), KEY).encode(
            value, [], "pl:e:victim"
        ),
        "wrong serializer (json, signed)": codec(JsonSerializer(), "pl").encode(
            value, [], "pl:e:victim"
        ),
        "wrong serializer (pickle, signed)": codec(PickleSerializer(), "pl").encode(
            value, [], "pl:e:victim"
        ),
        "compressed flag forged": bytes([*head[:3], head[3] | FLAG_COMPRESSED])
        + head[4:]
        + mac
        + body,
    }
    for version in (0, FORMAT_VERSION + 1, 255):  # re-signed: only the version byte is wrong
        new_head = HEADER.pack(MAGIC, version, head[3], 0)
        variants[f"format version {version} (signed)"] = sign(new_head, body)
    for blob_name, blob in blobs.items():
        for length in range(len(blob)):
            variants[f"{blob_name} truncated to {length}"] = blob[:length]
        for bit in range(len(blob) * 8):
            flipped = bytearray(blob)
            flipped[bit // 8] ^= 1 << (bit % 8)
            variants[f"{blob_name} bit {bit} flipped"] = bytes(flipped)
    return variants


@pytest.mark.parametrize("config", REDIS_CONFIGS)
def test_hostile_bytes_are_counted_misses(
    config: str, redis_url: str, r: Any, good_blobs: dict[str, bytes], caches: list[Cache]
) -> None:
    reader = make_cache(config, redis_url, namespace="pl", secret_key=KEY)
    caches.append(reader)
    # Positive control: the untouched blobs read back.
    assert reader.get("plain") == {"v": 1}
    assert reader.get("tagged") == [1, 2, 3]
    variants = hostile_variants(good_blobs)
    assert len(variants) > 1000
    for name, blob in variants.items():
        r.set("pl:e:victim", blob)
        before = reader.stats()["corrupt"]
        assert reader.get("victim", MISSING) is MISSING, name
        assert reader.stats()["corrupt"] == before + 1, name
    stats = reader.stats()
    assert stats["errors"] == 0
    assert stats["layers"]["redis"]["hits"] == 2


@pytest.mark.parametrize("config", REDIS_CONFIGS)
def test_corrupt_entry_in_batch_and_get_or_set(
    config: str, redis_url: str, r: Any, good_blobs: dict[str, bytes], caches: list[Cache]
) -> None:
    reader = make_cache(config, redis_url, namespace="pl", secret_key=KEY)
    caches.append(reader)
    r.set("pl:e:victim", good_blobs["plain"][:-1])
    # A corrupt entry spoils only itself in a batch read.
    assert reader.get_many(["victim", "plain", "tagged"]) == {
        "plain": {"v": 1},
        "tagged": [1, 2, 3],
    }
    assert reader.stats()["corrupt"] == 1
    # get_or_set treats it as a miss, loads once, and replaces it with a good entry.
    calls: list[int] = []
    assert reader.get_or_set("victim", lambda: calls.append(1) or "fresh", ttl=TTL) == "fresh"
    assert calls == [1]
    other = make_cache("redis", redis_url, namespace="pl", secret_key=KEY)
    caches.append(other)
    assert other.get("victim") == "fresh"
    assert reader.stats()["corrupt"] > 1  # counted again (get_or_set re-reads under its lock)
    assert reader.stats()["errors"] == other.stats()["errors"] == 0


HEADER_SHAPED = st.builds(
    lambda flags, taglen, tail: HEADER.pack(MAGIC, FORMAT_VERSION, flags, taglen) + tail,
    st.integers(0, 255),
    st.integers(0, 300),
    st.binary(max_size=400),
)


@pytest.mark.parametrize("secret", [KEY, None], ids=["signed", "unsigned"])
@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(blob=st.one_of(st.binary(max_size=300), HEADER_SHAPED))
def test_random_bytes_are_counted_misses(
    secret: bytes | None, blob: bytes, redis_url: str, r: Any
) -> None:
    with make_cache(
        "redis", redis_url, namespace="rnd", secret_key=secret, allow_unsigned=secret is None
    ) as reader:
        r.set("rnd:e:victim", blob)
        assert reader.get("victim", MISSING) is MISSING
        assert reader.stats()["corrupt"] == 1
        assert reader.stats()["errors"] == 0


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_SIGNED, 9), id="tagged-header-only"),
        pytest.param(
            HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_SIGNED, 1) + b"\n" + bytes(64),
            id="newline-tag-region",
        ),
    ],
)
def test_tag_header_of_only_newlines(
    blob: bytes, redis_url: str, r: Any, good_blobs: dict[str, bytes], caches: list[Cache]
) -> None:
    reader = make_cache("redis", redis_url, namespace="pl", secret_key=KEY)
    caches.append(reader)
    r.set("pl:e:victim", blob)
    assert reader.get_many(["victim", "plain"]) == {"plain": {"v": 1}}
    assert reader.get("victim", MISSING) is MISSING
    stats = reader.stats()
    assert (stats["corrupt"], stats["errors"]) == (2, 0)


@pytest.mark.parametrize(
    ("taglen_blob", "versions"),
    [(b"", 5), (b"nb:t:x", [None]), (b"nb:t:x", [[1]])],
    ids=["int-versions", "none-version", "list-version"],
)
def test_unsigned_body_with_bad_versions_is_a_miss(
    taglen_blob: bytes, versions: Any, redis_url: str, r: Any, caches: list[Cache]
) -> None:
    # Without a secret_key the envelope is not authenticated: anyone who can write Redis can
    # shape it, so every field must be validated (a miss, never an exception).
    reader = make_cache("redis", redis_url, namespace="nb", allow_unsigned=True)
    caches.append(reader)
    body = msgpack.packb([NOW + TTL, NOW + TTL, versions, 0.0, msgpack.packb(1)])
    head = HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(taglen_blob)) + taglen_blob
    r.set("nb:e:victim", head + body)
    assert reader.get("victim", MISSING) is MISSING
    assert reader.stats()["corrupt"] == 1


# -- (b) forged pickles never run; (c) pickle needs a secret key --------------------------------

PWNED: list[str] = []


def pwn(tag: str) -> str:
    PWNED.append(tag)
    return "pwned"


class ExploitMkdir:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


class ExploitGlobal:
    def __reduce__(self) -> tuple[Any, ...]:
        return (pwn, ("executed",))


def pickle_envelopes(marker: Path) -> dict[str, bytes]:
    mkdir = Entry(ExploitMkdir(str(marker)), NOW + TTL, NOW + TTL)
    glob = Entry(ExploitGlobal(), NOW + TTL, NOW + TTL)
    pickler = PickleSerializer()
    benign = codec(pickler, "pk").encode(Entry("benign", NOW + TTL, NOW + TTL), [], "pk:e:evil")
    b_head, b_mac, _ = split(benign)
    signed_evil = codec(pickler, "pk").encode(glob, [], "pk:e:evil")
    e_head, _, e_body = split(signed_evil)
    return {
        "unsigned mkdir": Codec(pickler).encode(mkdir, []),
        "unsigned global": Codec(pickler).encode(glob, []),
        "wrong key mkdir": Codec(pickler, b"attacker").encode(mkdir, []),
        "wrong key global": Codec(pickler, b"attacker").encode(glob, []),
        "raw pickle": pickler.dumps(ExploitGlobal()),
        "benign mac, evil body": b_head + b_mac + e_body,
        "zero mac": e_head + bytes(MAC_SIZE) + e_body,
        "signed flag cleared": bytes([*e_head[:3], e_head[3] & ~FLAG_SIGNED]) + e_head[4:] + e_body,
        "compressed, wrong key": Codec(pickler, b"attacker", compress_threshold=1).encode(glob, []),
    }


@pytest.mark.parametrize("config", REDIS_CONFIGS)
def test_forged_pickles_never_execute(
    config: str, redis_url: str, r: Any, tmp_path: Path, caches: list[Cache]
) -> None:
    marker = tmp_path / "pwned"
    PWNED.clear()
    reader = make_cache(config, redis_url, namespace="pk", serializer="pickle", secret_key=KEY)
    caches.append(reader)
    envelopes = pickle_envelopes(marker)
    for name, blob in envelopes.items():
        r.set("pk:e:evil", blob)
        assert reader.get("evil", MISSING) is MISSING, name
        assert reader.get_many(["evil"]) == {}, name
    r.set("pk:e:evil", envelopes["unsigned global"])
    assert reader.get_or_set("evil", lambda: "loaded", ttl=TTL) == "loaded"
    assert reader.stats()["corrupt"] > 2 * len(envelopes)
    # A msgpack cache sharing the key never unpickles a correctly signed pickle envelope.
    msgpack_reader = make_cache(config, redis_url, namespace="pk", secret_key=KEY)
    caches.append(msgpack_reader)
    r.set(
        "pk:e:evil",
        codec(PickleSerializer(), "pk").encode(
            Entry(ExploitGlobal(), NOW + TTL, NOW + TTL), [], "pk:e:evil"
        ),
    )
    assert msgpack_reader.get("evil", MISSING) is MISSING
    assert msgpack_reader.stats()["corrupt"] == 1
    assert not marker.exists()
    assert PWNED == []
    # Positive control: signed with the real key, both payloads do run (so they were live).
    for i, exploit in enumerate((ExploitMkdir(str(marker)), ExploitGlobal())):
        r.set(
            f"pk:e:control{i}",
            codec(PickleSerializer(), "pk").encode(
                Entry(exploit, NOW + TTL, NOW + TTL), [], f"pk:e:control{i}"
            ),
        )
        reader.get(f"control{i}")
    assert marker.is_dir()
    assert PWNED == ["executed"]
    PWNED.clear()


def test_pickle_without_secret_key_is_refused(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="secret_key"):
        Cache(serializer="pickle")
    for secret in (None, "", b""):
        with pytest.raises(ConfigurationError, match="secret_key"):
            Cache([MemoryLayer()], serializer="pickle", secret_key=secret)
        with pytest.raises(ConfigurationError, match="secret_key"):
            Cache.from_url(redis_url, serializer="pickle", secret_key=secret)
    with pytest.raises(ConfigurationError, match="secret_key"):
        Cache([RedisLayer(redis_url)], serializer=PickleSerializer())
    # ... and with a key it is accepted.
    with Cache.from_url(redis_url, l1=False, serializer="pickle", secret_key=KEY) as cache:
        cache.set("k", {1, 2})
        assert cache.get("k") == {1, 2}


# -- (d) a signed decompression bomb is a cheap miss --------------------------------------------


def bomb(inflated: int, name: str) -> bytes:
    """A signed, compressed msgpack envelope whose payload inflates to ``inflated`` bytes (a
    msgpack bin of zeros), streamed through zlib so building it needs no large buffer."""
    deflate = zlib.compressobj(9)
    parts = [deflate.compress(b"\xc6" + (inflated - 5).to_bytes(4, "big"))]
    chunk = bytes(1 << 20)
    left = inflated - 5
    while left:
        step = min(left, len(chunk))
        parts.append(deflate.compress(chunk[:step]))
        left -= step
    parts.append(deflate.flush())
    body = msgpack.packb([NOW + TTL, NOW + TTL, [], 0.0, b"".join(parts)], use_bin_type=True)
    flags = MsgpackSerializer.id << SERIALIZER_SHIFT | FLAG_COMPRESSED | FLAG_SIGNED
    return sign(HEADER.pack(MAGIC, FORMAT_VERSION, flags, 0), body, name, "bomb")


def test_bomb_builder_matches_codec() -> None:
    """The hand-built envelope is exactly what Codec produces and accepts."""
    small = bomb(64 * 1024, "small")
    bombs = codec(MsgpackSerializer(), "bomb")
    entry, versions = bombs.decode(small, "bomb:e:small")
    assert entry.value == bytes(64 * 1024 - 5)
    assert versions == []
    own = bombs.encode(Entry(bytes(64 * 1024 - 5), NOW + TTL, NOW + TTL), [], "bomb:e:small")
    assert own[: HEADER.size] == small[: HEADER.size]  # same format, flags (compressed, signed)
    assert bombs.decode(own, "bomb:e:small")[0].value == entry.value


@pytest.mark.parametrize("config", REDIS_CONFIGS)
def test_decompression_bomb_is_a_fast_small_miss(
    config: str, redis_url: str, r: Any, caches: list[Cache]
) -> None:
    limit = 1 << 20
    reader = make_cache(config, redis_url, namespace="bomb", secret_key=KEY, max_value_size=limit)
    caches.append(reader)
    blob = bomb(200 * 1024 * 1024, "big")
    assert len(blob) < 300_000
    # Control: a payload that inflates to just under the limit is a hit.
    r.set("bomb:e:small", bomb(limit - 1024, "small"))
    assert len(reader.get("small")) == limit - 1024 - 5
    r.set("bomb:e:big", blob)
    tracemalloc.start()
    try:
        started = time.perf_counter()
        assert reader.get("big", MISSING) is MISSING
        assert reader.get_or_set("big", lambda: "loaded", ttl=TTL) == "loaded"
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
    assert reader.stats()["corrupt"] >= 2
    assert reader.stats()["errors"] == 0


# -- (e) nasty keys round-trip without collisions -----------------------------------------------


def digest_of(key: str) -> str:
    return "#" + blake2b(key.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


NASTY_KEYS = [
    "", " ", "a b", " a", "a ", "a\nb", "a\r\nb", "\t", "\x00", "a\x00", "a\x00b", "\x7f",
    "ü", "日本語", "😀", "e\u0301", "\u00e9",  # two spellings of é: distinct keys
    "#", "##", "a#b", "#a", "*", "?", "[a]", "a*", "\\", "'", '"', "%", "{x}",
    "x" * 10_000, "ü" * 10_000, "a" * 200, "a" * 201, "a" * 199 + "#",
    "e:a", "t:a", "l:a", "inv", "a:e:b", "ns:e:a b",
    digest_of("a b"), digest_of("a b")[1:], digest_of("x" * 10_000), digest_of(digest_of("a b")),
    "a\u2028b", "\ufeff", "\U0010ffff",
]  # fmt: skip
assert len(set(NASTY_KEYS)) == len(NASTY_KEYS)


@pytest.mark.parametrize("config", ALL_CONFIGS)
def test_nasty_keys_round_trip(
    config: str, request: pytest.FixtureRequest, caches: list[Cache]
) -> None:
    url = request.getfixturevalue("redis_url") if config != "memory" else None
    writer = make_cache(config, url, namespace="ns")
    caches.append(writer)
    expected = {key: f"value {i}" for i, key in enumerate(NASTY_KEYS)}
    for key, value in expected.items():
        assert writer.set(key, value, ttl=TTL, tags=[key]) is True
    for key, value in expected.items():
        assert writer.get(key) == value, repr(key[:50])
    assert writer.get_many(NASTY_KEYS) == expected
    if config == "memory":
        return
    # A second process (fresh L1) sees the same through Redis, one Redis entry key per key.
    reader = make_cache(config, url, namespace="ns")
    caches.append(reader)
    assert reader.get_many(NASTY_KEYS) == expected
    for key, value in expected.items():
        assert reader.get(key) == value
    client = redis.Redis.from_url(url)
    try:
        assert len(list(client.scan_iter(match="ns:e:*", count=1000))) == len(NASTY_KEYS)
    finally:
        client.close()
    # Tags named like the keys are their own key space: invalidating one drops one entry.
    writer.invalidate_tags("a b")
    assert writer.get("a b", MISSING) is MISSING
    # The reader's L1 (if any) learns of it through the broadcast, a moment later.
    deadline = time.monotonic() + 2
    while reader.get("a b", MISSING) is not MISSING and time.monotonic() < deadline:
        time.sleep(0.005)
    assert reader.get("a b", MISSING) is MISSING
    assert reader.get("a", MISSING) is MISSING  # never set
    assert reader.get(digest_of("a b")) == expected[digest_of("a b")]
    assert writer.get_many(NASTY_KEYS) == {k: v for k, v in expected.items() if k != "a b"}


@pytest.mark.parametrize("config", REDIS_CONFIGS)
def test_surrogate_keys_round_trip(config: str, redis_url: str, caches: list[Cache]) -> None:
    cache = make_cache(config, redis_url, namespace="sg")
    caches.append(cache)
    assert cache.set("\udcff", 1, ttl=TTL) is True
    assert cache.set("\udcfe", 2, ttl=TTL) is True
    assert cache.get("\udcff") == 1
    assert cache.get("\udcfe") == 2
    assert cache.delete("\udcff") is True


def test_surrogate_keys_round_trip_in_memory() -> None:
    cache = make_cache("memory", None, namespace="sg")
    cache.set("\udcff", 1)
    cache.set("\udcfe", 2)
    assert (cache.get("\udcff"), cache.get("\udcfe")) == (1, 2)


ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=300)


@settings(max_examples=500, deadline=None, database=None)
@given(a=ANY_TEXT, b=ANY_TEXT)
def test_redis_key_mapping_is_injective(a: str, b: str) -> None:
    ks = KeySpace("ns")
    assume(a != b)
    assert ks.entry(a) != ks.entry(b)
    assert ks.entry(a).startswith("ns:e:")
    assert ks.tag(a) != ks.entry(a)
    assert ks.lock(a) != ks.entry(b)


@pytest.mark.parametrize("config", ALL_CONFIGS)
def test_any_two_text_keys_keep_their_own_value(
    config: str, request: pytest.FixtureRequest, caches: list[Cache]
) -> None:
    url = request.getfixturevalue("redis_url") if config != "memory" else None
    writer = make_cache(config, url, namespace="hyp")
    caches.append(writer)
    # Another process's view straight from Redis (no L1 of its own that could lag behind).
    reader = make_cache("redis", url, namespace="hyp") if url is not None else None
    if reader is not None:
        caches.append(reader)

    @settings(max_examples=100, deadline=None, database=None)
    @given(a=st.text(), b=st.text())
    def check(a: str, b: str) -> None:
        assume(a != b)
        writer.set(a, ["a", a], ttl=TTL)
        writer.set(b, ["b", b], ttl=TTL)
        assert writer.get(a) == ["a", a]
        assert writer.get(b) == ["b", b]
        if reader is not None:
            assert reader.get_many([a, b]) == {a: ["a", a], b: ["b", b]}

    check()


# -- (f) clear() stays inside its namespace, without FLUSHDB or KEYS ----------------------------

# What clear() leaves: tag versions, locks and tombstones (they only ever expire). Records and
# write-behind streams are kept too (tests/core/test_ownership.py).
BOOKKEEPING = {ns: tuple(f"{ns}:{kind}:".encode() for kind in "tld") for ns in ("a", "gns")}


def test_clear_touches_only_its_namespace(redis_url: str, r: Any, caches: list[Cache]) -> None:
    spaces = {ns: make_cache("redis", redis_url, namespace=ns) for ns in ("a", "ab", "b")}
    caches.extend(spaces.values())
    l1_a = make_cache("l1_l2", redis_url, namespace="a")
    caches.append(l1_a)
    for ns, cache in spaces.items():
        cache.set_many({f"k{i}": f"{ns}{i}" for i in range(1200)}, ttl=TTL, tags=["t"])
        cache.set("a", ns, ttl=TTL, tags=["u"])
        cache.invalidate_tags("u")
        cache.get_or_set("loaded", lambda ns=ns: ns, ttl=TTL)
    assert l1_a.get("k1") == "a1"
    wait_listening(l1_a)  # (subscribing resets L1 once: fill it only after that)
    assert l1_a.get("k1") == "a1"
    hits = l1_a.stats()["layers"]["memory"]["hits"]
    assert l1_a.get("k1") == "a1"
    assert l1_a.stats()["layers"]["memory"]["hits"] == hits + 1  # now held in an L1 too
    foreign = {"a": b"1", "a_x": b"2", "aa:x": b"3", "ab": b"4", "b:a:x": b"5", "xa:e:k1": b"6"}
    for key, value in foreign.items():
        r.set(key, value)
    before = {k: r.get(k) for k in r.scan_iter(count=1000) if not k.startswith(b"a:")}
    assert any(k.startswith(b"ab:") for k in before)
    assert any(k.startswith(b"a:") for k in r.scan_iter(match="a:*", count=1000))

    r.config_resetstat()
    spaces["a"].clear()
    commands = set(r.info("commandstats"))

    assert not {"cmdstat_flushdb", "cmdstat_flushall", "cmdstat_keys"} & commands
    assert {"cmdstat_scan", "cmdstat_unlink"} <= commands  # positive control
    # Every entry is gone; what is left is bookkeeping that only expires (tag versions; locks
    # and tombstones guard loads in flight), never a value.
    assert list(r.scan_iter(match="a:e:*", count=1000)) == []
    assert all(k.startswith(BOOKKEEPING["a"]) for k in r.scan_iter(match="a:*", count=1000))
    assert {k: r.get(k) for k in r.scan_iter(count=1000) if not k.startswith(b"a:")} == before
    assert spaces["a"].get("k1", MISSING) is MISSING
    assert spaces["ab"].get("k1") == "ab1"
    assert spaces["b"].get("k1") == "b1"
    assert spaces["ab"].get("loaded") == "ab"
    # Another process's L1 learns of the clear through the broadcast.
    deadline = time.monotonic() + 2
    while l1_a.get("k1", MISSING) is not MISSING and time.monotonic() < deadline:
        time.sleep(0.01)
    assert l1_a.get("k1", MISSING) is MISSING


# -- (g) everything lives under "<namespace>:"; runs as an ACL user limited to that prefix ------


def workload(cache: Cache, probe: Any = None) -> None:
    def loader() -> str:
        if probe is not None:
            probe()
        return "loaded"

    assert cache.set("user:1", {"name": "Ada"}, ttl=TTL, tags=["user:1", "users"]) is True
    assert cache.set_many({"a b": 1, "ü": 2}, ttl=TTL, tags=["users"]) is True
    assert cache.add("added", 3, ttl=TTL) is True
    assert cache.add("added", 4, ttl=TTL) is False
    assert cache.get("user:1") == {"name": "Ada"}
    assert cache.get_many(["a b", "ü", "nope"]) == {"a b": 1, "ü": 2}
    assert cache.get_or_set("lazy", loader, ttl=TTL, tags=["lazy"]) == "loaded"
    assert cache.get_or_set("lazy", loader, ttl=TTL, tags=["lazy"]) == "loaded"
    cache.invalidate_tags("users")
    assert cache.get("user:1", MISSING) is MISSING
    assert cache.get("added") == 3
    assert cache.delete("added") is True
    assert cache.get_or_set("lazy", loader, ttl=TTL) == "loaded"


def test_every_redis_name_is_under_the_namespace(
    redis_url: str, r: Any, caches: list[Cache]
) -> None:
    channels_before = set(r.pubsub_channels())  # other tests' caches may still be listening
    cache = make_cache("l1_l2", redis_url, namespace="gns")
    caches.append(cache)
    seen_during_load: list[bytes] = []
    workload(cache, probe=lambda: seen_during_load.extend(r.scan_iter(count=1000)))
    wait_listening(cache)
    keys = list(r.scan_iter(count=1000))
    assert keys
    assert all(k.startswith(b"gns:") for k in keys + seen_during_load), keys + seen_during_load
    families = {k.split(b":")[1] for k in keys}
    assert {b"e", b"t"} <= families
    assert any(k.startswith(b"gns:l:") for k in seen_during_load)  # the lock, while loading
    assert set(r.pubsub_channels()) - channels_before == {b"gns:inv"}
    cache.clear()
    assert all(k.startswith(BOOKKEEPING["gns"]) for k in r.scan_iter(count=1000))


@pytest.fixture
def acl_url(redis_url: str, r: Any) -> Iterator[str]:
    r.execute_command(
        "ACL", "SETUSER", "ckuser", "reset", "on", ">s3cret",
        "resetkeys", "~gns:*", "resetchannels", "&gns:*", "+@all",
    )  # fmt: skip
    try:
        yield redis_url.replace("redis://", "redis://ckuser:s3cret@")
    finally:
        r.execute_command("ACL", "DELUSER", "ckuser")


def test_runs_as_an_acl_user_limited_to_its_prefix(
    acl_url: str, r: Any, caches: list[Cache]
) -> None:
    # Control: the user really is confined.
    confined = redis.Redis.from_url(acl_url)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            confined.get("other:x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            confined.publish("other:inv", b"x")
        confined.set("gns:probe", b"1")
        confined.delete("gns:probe")
    finally:
        confined.close()
    outsider = Cache.from_url(acl_url, l1=False, namespace="other", secret_key="test-secret")
    caches.append(outsider)
    outsider.set("k", 1)
    assert outsider.stats()["errors"] > 0  # a wrong prefix would be seen as errors

    for l1 in (True, False):
        cache = Cache.from_url(acl_url, l1=l1, namespace="gns", secret_key="test-secret")
        caches.append(cache)
        workload(cache)
        if l1:
            wait_listening(cache)
        cache.clear()
        assert cache.get("lazy", MISSING) is MISSING
        stats = cache.stats()
        assert stats["errors"] == 0
        assert stats["invalidation_errors"] == 0
        assert stats["circuit"] == "closed"
    assert all(k.startswith(BOOKKEEPING["gns"]) for k in r.scan_iter(match="gns:*"))


async def test_async_ops_run_as_the_acl_user(acl_url: str) -> None:
    cache = Cache.from_url(acl_url, namespace="gns", secret_key="test-secret")
    try:
        assert await cache.aset("k", [1], ttl=TTL, tags=["t"]) is True
        assert await cache.aget("k") == [1]
        assert await cache.aget_or_set("lazy", lambda: "v", ttl=TTL, tags=["t"]) == "v"
        assert await cache.aadd("k2", 2, ttl=TTL) is True
        assert await cache.aget_many(["k", "k2"]) == {"k": [1], "k2": 2}
        await cache.ainvalidate_tags("t")
        assert await cache.aget("k", MISSING) is MISSING
        assert await cache.adelete("k2") is True
        await cache.aclear()
        assert cache.stats()["errors"] == 0
    finally:
        await cache.aclose()


# -- (h) values the serializer cannot encode ----------------------------------------------------


class Opaque:
    pass


UNSERIALIZABLE = [Opaque(), {1, 2}, 2**64, {"nested": [object()]}, lambda: 1]


@pytest.mark.parametrize("config", REDIS_CONFIGS)
@pytest.mark.parametrize("value", UNSERIALIZABLE, ids=["object", "set", "2**64", "nested", "fn"])
def test_unserializable_values_raise(
    config: str, value: Any, redis_url: str, caches: list[Cache]
) -> None:
    cache = make_cache(config, redis_url, namespace="ser")
    caches.append(cache)
    with pytest.raises(SerializationError, match="msgpack"):
        cache.set("k", value)
    with pytest.raises(SerializationError):
        cache.set_many({"ok": 1, "k": value})
    with pytest.raises(SerializationError):
        cache.add("k", value)
    with pytest.raises(SerializationError):
        cache.get_or_set("k", lambda: value)
    # Nothing was stored, not even the serializable half of set_many, in any layer.
    assert cache.get_many(["k", "ok"]) == {}
    other = make_cache("redis", redis_url, namespace="ser")
    caches.append(other)
    assert other.get_many(["k", "ok"]) == {}
    assert cache.stats()["errors"] == 0
    assert isinstance(SerializationError("x"), TypeError)
