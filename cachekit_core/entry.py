"""The cache entry, its freshness maths, and the envelope it is stored in on shared layers.

Envelope layout (all integers big-endian)::

    b"CK" | format:u8 | flags:u8 | taglen:u16 | tag keys ("\\n"-joined, taglen bytes)
          | HMAC-SHA256 of key + the rest (32 bytes, when signed) | body

    body = msgpack [fresh_until, stale_until, [tag versions], delta, payload]

``payload`` is the value itself when FLAG_INLINE is set (msgpack values below the compression
threshold: the common case, decoded in one pass), else the serializer's bytes, zlib-compressed
when FLAG_COMPRESSED is set.

The tag keys sit in clear text right after the fixed header so the Redis read script can fetch
the entry and the current versions of its tags in one round trip. The HMAC covers the entry's
key and every byte but itself, tag keys included, so a payload cannot be re-tagged, swapped or
copied under another key unnoticed. Entries are signed with the current key only; older keys
being rotated out (``fallback_keys``) are accepted when verifying.
A different ``format`` byte reads as a miss, so a format change never misreads old entries.
"""

from __future__ import annotations

import hmac
import math
import struct
import zlib
from hashlib import sha256
from typing import Any

import msgpack

from .exceptions import SerializationError
from .serializers import MsgpackSerializer, Serializer

MAGIC = b"CK"
FORMAT_VERSION = 2
HEADER = struct.Struct("!2sBBH")
MAC_SIZE = 32

MAX_TAG_BYTES = 0xFFFF  # the header's u16 length of the tag keys
FLAG_COMPRESSED = 0x01  # payload is zlib-compressed serializer output
FLAG_SIGNED = 0x02
FLAG_INLINE = 0x04  # msgpack values sit in the body itself: one (un)packing pass, not two
SERIALIZER_SHIFT = 4


class Entry:
    """A value with absolute expiry times (epoch seconds, ``inf`` for never)."""

    __slots__ = (
        "delta",
        "fresh_until",
        "gens",
        "local_fresh_until",
        "size",
        "stale_until",
        "tags",
        "value",
    )

    def __init__(
        self,
        value: Any,
        fresh_until: float,
        stale_until: float,
        tags: tuple[str, ...] = (),
        delta: float = 0.0,
    ) -> None:
        self.value = value
        self.fresh_until = fresh_until
        self.stale_until = stale_until
        # Tag *keys* (namespaced, key-safe), not user tag names: they are what Redis stores.
        self.tags = tags
        # Seconds the loader took: XFetch refreshes slow-to-compute entries earlier.
        self.delta = delta
        # Set when the entry enters the in-process layer: how long that copy is trusted without
        # asking Redis, and the local generation of each tag at the time (see Cache._gens).
        self.local_fresh_until = fresh_until
        self.gens: tuple[int, ...] = ()
        # The value's serialized size in bytes, uncompressed (0: not known yet): recorded by
        # the codec when the entry is written or read, else measured by the memory layer.
        # What the in-process layer charges it against its byte bound.
        self.size = 0

    def ttl_ms(self, now: float) -> int | None:
        """Milliseconds until the entry may be dropped (end of its stale window)."""
        if math.isinf(self.stale_until):
            return None
        return max(1, math.ceil((self.stale_until - now) * 1000))

    def __repr__(self) -> str:
        return f"Entry(fresh_until={self.fresh_until}, stale_until={self.stale_until})"


def tag_keys_of(blob: bytes, tag_prefix: str) -> list[str] | None:
    """The tag keys in ``blob``'s clear-text header, as the Redis read script finds them.

    [] when there are none (or no header: the decoder rejects such a blob later); None when
    the header names anything but tag keys of ``tag_prefix``, which must never be read.
    """
    if len(blob) < HEADER.size:
        return []
    magic, _, _, taglen = HEADER.unpack_from(blob)
    if magic != MAGIC or not taglen:
        return []
    text = blob[HEADER.size : HEADER.size + taglen].decode("utf-8", "replace")
    keys = [k for k in text.split("\n") if k]
    if not keys or not all(k.startswith(tag_prefix) for k in keys):
        return None
    return keys


class CorruptEntry(Exception):
    """The stored bytes are not a valid, authentic entry (counted and treated as a miss)."""


class Codec:
    """Encodes entries for shared layers: serialize, compress, sign; and back, strictly."""

    __slots__ = (
        "_signers",
        "compress_threshold",
        "fallback_keys",
        "max_size",
        "secret_key",
        "serializer",
    )

    def __init__(
        self,
        serializer: Serializer,
        secret_key: bytes | None = None,
        compress_threshold: int = 4096,  # below this, zlib saves little and costs every read
        max_size: int = 64 * 1024 * 1024,
        fallback_keys: tuple[bytes, ...] = (),
    ) -> None:
        self.serializer = serializer
        self.secret_key = secret_key
        self.compress_threshold = compress_threshold
        self.max_size = max_size
        # Older keys being rotated out: they verify entries, never sign one.
        self.fallback_keys = fallback_keys if secret_key else ()
        # Keyed HMAC states, made once: copying one costs a fraction of keying a new one, on
        # every read of a signed entry. The current key's first.
        self._signers = [
            hmac.new(k, digestmod=sha256) for k in (secret_key, *self.fallback_keys) if k
        ]

    @staticmethod
    def _mac(signer: hmac.HMAC, key: str, *parts: bytes | memoryview) -> bytes:
        # The key is signed too: a signed entry copied under another key (another namespace
        # included: the engine passes the full stored key) does not verify.
        mac = signer.copy()
        mac.update(key.encode("utf-8", "surrogatepass") + b"\0")
        for part in parts:
            mac.update(part)
        return mac.digest()

    def _verified(self, key: str, mac: bytes, *parts: bytes | memoryview) -> bool:
        """Whether ``mac`` signs ``parts`` under ``key`` with the key or one of its fallbacks."""
        return any(
            hmac.compare_digest(self._mac(signer, key, *parts), mac) for signer in self._signers
        )

    def encode(self, entry: Entry, versions: list[int], key: str = "") -> bytes:
        fields = [entry.fresh_until, entry.stale_until, versions, entry.delta]
        serializer = self.serializer
        flags = serializer.id << SERIALIZER_SHIFT
        threshold = self.compress_threshold
        body = None
        if serializer.id == MsgpackSerializer.id:
            inline: bytes = msgpack.packb([*fields, entry.value], use_bin_type=True)
            if not threshold or len(inline) <= threshold:
                body, flags = inline, flags | FLAG_INLINE
                entry.size = len(inline)
        if body is None:
            payload = serializer.dumps(entry.value)
            entry.size = len(payload)  # before compression: what the value takes in memory
            if threshold and len(payload) > threshold:
                packed = zlib.compress(payload, 1)
                if len(packed) < len(payload):
                    payload, flags = packed, flags | FLAG_COMPRESSED
            body = msgpack.packb([*fields, payload], use_bin_type=True)
        tag_blob = "\n".join(entry.tags).encode()
        if len(tag_blob) > MAX_TAG_BYTES:
            raise SerializationError(
                f"the tag keys of one entry take {len(tag_blob)} bytes, over the envelope's "
                f"{MAX_TAG_BYTES}: use fewer tags (a tag per table or per page of rows, not per "
                "row)"
            )
        if self.secret_key:
            flags |= FLAG_SIGNED
        header = HEADER.pack(MAGIC, FORMAT_VERSION, flags, len(tag_blob)) + tag_blob
        if self.secret_key:
            return header + self._mac(self._signers[0], key, header, body) + body
        return header + body

    def decode(self, blob: bytes, key: str = "") -> tuple[Entry, list[int]]:
        """Return the entry and the tag versions it was written with, or raise CorruptEntry."""
        if len(blob) < HEADER.size:
            raise CorruptEntry("truncated header")
        magic, version, flags, taglen = HEADER.unpack_from(blob)
        if magic != MAGIC or version != FORMAT_VERSION:
            raise CorruptEntry("unknown format")
        if flags >> SERIALIZER_SHIFT != self.serializer.id:
            raise CorruptEntry("written with another serializer")
        start = HEADER.size + taglen
        if self.secret_key:
            # Unsigned entries are rejected outright when a key is set: never deserialize them.
            if not flags & FLAG_SIGNED or len(blob) < start + MAC_SIZE:
                raise CorruptEntry("unsigned")
            view = memoryview(blob)  # the MAC covers what surrounds it, read without a copy
            mac = blob[start : start + MAC_SIZE]
            if not self._verified(key, mac, view[:start], view[start + MAC_SIZE :]):
                raise CorruptEntry("bad signature")
            start += MAC_SIZE
        elif flags & FLAG_SIGNED:
            raise CorruptEntry("signed, but no secret_key configured")
        try:
            fresh, stale, versions, delta, payload = msgpack.unpackb(
                blob[start:], raw=False, use_list=True, strict_map_key=False
            )
            size = len(blob) - start  # inline: the body, as encode measured it
            if flags & FLAG_INLINE:
                value = payload
            elif flags & FLAG_COMPRESSED:
                # Bounded inflate: a small forged payload must not expand to gigabytes.
                inflater = zlib.decompressobj()
                payload = inflater.decompress(payload, self.max_size)
                if inflater.unconsumed_tail:
                    raise CorruptEntry("payload above max_size")
                size = len(payload)
                value = self.serializer.loads(payload)
            else:
                size = len(payload)
                value = self.serializer.loads(payload)
            entry = Entry(value, float(fresh), float(stale), (), float(delta))
            entry.size = size
            if taglen:
                entry.tags = tuple(blob[HEADER.size : HEADER.size + taglen].decode().split("\n"))
                if not isinstance(versions, list) or len(versions) != len(entry.tags):
                    raise CorruptEntry("tag header and versions disagree")
                checked = [int(v) for v in versions]
            elif versions:
                raise CorruptEntry("tag versions without tags")
            else:
                checked = []
        except CorruptEntry:
            raise
        except Exception as exc:  # any decoding failure of untrusted bytes is a miss
            raise CorruptEntry(f"undecodable: {type(exc).__name__}") from exc
        return entry, checked
