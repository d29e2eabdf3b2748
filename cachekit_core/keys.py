"""Key safety: every user key maps to one Redis-safe key, and no two user keys collide.

Readable keys stay readable (``shop:e:user:42``); anything long or unsafe (spaces, newlines,
unicode, control bytes, ``#``, braces) becomes ``#`` + a blake2b digest. ``#`` is never allowed
in a readable key, so a digest can never collide with a readable key, and without braces no user
key can pick its own Redis Cluster hash slot.
"""

from __future__ import annotations

import functools
import re
from hashlib import blake2b

from .exceptions import ConfigurationError

MAX_READABLE_KEY = 200
_READABLE = re.compile(r"[A-Za-z0-9_.:/@=+,;%!~*()\[\]<>|^$&?'\-]{1," + str(MAX_READABLE_KEY) + "}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# Sub-prefixes keep entries, tag versions, locks and channels in disjoint key spaces.
ENTRY, TAG, LOCK, STREAM = "e", "t", "l", "s"
CHANNEL_SUFFIX = "inv"


def check_namespace(namespace: str) -> str:
    """Return the namespace if it is safe to use as a Redis key prefix and ACL pattern."""
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ConfigurationError(
            f"namespace {namespace!r} must be 1-64 characters of A-Z a-z 0-9 _ . - "
            "(it prefixes every Redis key and is used in ACL patterns)"
        )
    return namespace


def safe_part(key: str) -> str:
    """Return ``key`` if it is short and readable, else a collision-free digest of it."""
    if len(key) <= MAX_READABLE_KEY:
        return _safe_short(key)  # memoised: this runs on every read
    return _digest(key)


@functools.lru_cache(maxsize=65_536)
def _safe_short(key: str) -> str:
    return key if _READABLE.fullmatch(key) else _digest(key)


def _digest(key: str) -> str:
    return "#" + blake2b(key.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


class KeySpace:
    """Builds the Redis names of one namespace; all live under ``<namespace>:``."""

    __slots__ = ("channel", "namespace", "prefix", "tag_prefix")

    def __init__(self, namespace: str) -> None:
        self.namespace = check_namespace(namespace)
        self.prefix = namespace + ":"
        # All tag versions of a namespace share one Redis Cluster hash slot ({namespace}), so
        # an entry's tags are read with one MGET and bumped by one script on any deployment.
        # Entries, locks and streams hash on their whole key and spread over the cluster.
        self.tag_prefix = f"{self.prefix}{TAG}:{{{namespace}}}:"
        self.channel = f"{namespace}:{CHANNEL_SUFFIX}"

    def entry(self, key: str) -> str:
        return f"{self.prefix}{ENTRY}:{safe_part(key)}"

    def tag(self, tag: str) -> str:
        return self.tag_prefix + safe_part(tag)

    def lock(self, key: str) -> str:
        return f"{self.prefix}{LOCK}:{safe_part(key)}"

    def stream(self, name: str) -> str:
        return f"{self.prefix}{STREAM}:{safe_part(name)}"

    def scan_pattern(self) -> str:
        # The namespace alphabet excludes glob metacharacters, so no escaping is needed.
        return self.prefix + "*"
