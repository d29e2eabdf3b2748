"""Key safety: every user key maps to one Redis-safe key, and no two user keys collide.

Readable keys stay readable (``shop:e:user:42``); anything long or unsafe (spaces, newlines,
unicode, control bytes, ``#``, braces) becomes ``#`` + a blake2b digest. ``#`` is never allowed
in a readable key, so a digest can never collide with a readable key, and without braces no user
key can pick its own Redis Cluster hash slot.
"""

from __future__ import annotations

import datetime
import enum
import functools
import re
from collections.abc import Sequence
from decimal import Decimal
from hashlib import blake2b
from typing import Any
from uuid import UUID

from .exceptions import ConfigurationError

MAX_READABLE_KEY = 200
_READABLE = re.compile(r"[A-Za-z0-9_.:/@=+,;%!~*()\[\]<>|^$&?'\-]{1," + str(MAX_READABLE_KEY) + "}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# Sub-prefixes keep entries, tag versions, locks, streams, records and tombstones in disjoint
# key spaces. Only entries are the cache's own to drop wholesale (clear(), an overflow of lost
# invalidations); records (sessions) and streams (write-behind) hold data that exists nowhere
# else, and are only ever deleted one by one, by their owner.
ENTRY, TAG, LOCK, STREAM, RECORD, TOMBSTONE = "e", "t", "l", "s", "r", "d"
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

    __slots__ = ("channel", "entry_prefix", "namespace", "prefix", "record_prefix", "tag_prefix")

    def __init__(self, namespace: str) -> None:
        self.namespace = check_namespace(namespace)
        self.prefix = namespace + ":"
        # All tag versions of a namespace share one Redis Cluster hash slot ({namespace}), so
        # an entry's tags are read with one MGET and bumped by one script on any deployment.
        # Entries, locks and streams hash on their whole key and spread over the cluster.
        self.tag_prefix = f"{self.prefix}{TAG}:{{{namespace}}}:"
        self.channel = f"{namespace}:{CHANNEL_SUFFIX}"
        self.entry_prefix = f"{self.prefix}{ENTRY}:"
        self.record_prefix = f"{self.prefix}{RECORD}:"

    def entry(self, key: str) -> str:
        return self.entry_prefix + safe_part(key)

    def record(self, key: str) -> str:
        """Where a record (a value the cache keeps but does not own: a session) lives. The
        MAC covers this full key, so a record never verifies as an entry, nor the reverse.
        Always a digest: a record's key is often a secret (a session id, which is Django's
        cookie), and whoever can list Redis's keys must not learn it."""
        return self.record_prefix + _digest(key)

    def tombstone(self, entry_key: str) -> str:
        """The tombstone a delete of ``entry_key`` leaves (see ``layers/_shared.py``). Its hash
        tag is the entry key itself, so both share a Redis Cluster slot and one script can
        check one against the other (entry keys never contain braces)."""
        return f"{self.prefix}{TOMBSTONE}:{{{entry_key}}}"

    def tag(self, tag: str) -> str:
        return self.tag_prefix + safe_part(tag)

    def lock(self, key: str) -> str:
        return f"{self.prefix}{LOCK}:{safe_part(key)}"

    def stream(self, name: str) -> str:
        return f"{self.prefix}{STREAM}:{safe_part(name)}"

    def scan_pattern(self) -> str:
        # The namespace alphabet excludes glob metacharacters, so no escaping is needed.
        return self.prefix + "*"

    def entry_pattern(self) -> str:
        """What ``clear()`` (and an overflow of lost invalidations) may delete: entries only."""
        return self.entry_prefix + "*"


# Values whose repr() is a stable, unique text form: the same value gives the same text in
# every process, and different values give different texts.
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None), bytes})
_STABLE_TYPES = (Decimal, UUID, datetime.date, datetime.time, datetime.timedelta, enum.Enum)


def stable_repr(values: tuple[Any, ...], names: Sequence[str]) -> str:
    """The text of a call's arguments for a default ``@cached`` key: ``repr(values)`` when
    every value has a stable, unique text form; else TypeError naming the parameter.

    ``repr`` of most objects is their memory address (a new key every process, and a reused
    address is another object's key) or not unique (a Django model's ``<Customer: John
    Smith>``): such a key would serve one object's value for another's.
    """
    for value in values:
        if type(value) not in _PLAIN_TYPES:
            return (
                "(" + "".join(_part(v, n) + ", " for v, n in zip(values, names, strict=True)) + ")"
            )
    return repr(values)


def _part(value: Any, name: str) -> str:
    kind = type(value)
    if kind in _PLAIN_TYPES or isinstance(value, _STABLE_TYPES):
        return repr(value)
    if kind is tuple:
        return "(" + "".join(_part(v, name) + ", " for v in value) + ")"
    if kind is frozenset:  # its iteration order depends on the process's hash seed
        return "frozenset({" + ", ".join(sorted(_part(v, name) for v in value)) + "})"
    for base in (str, int, float, bytes):  # a subclass (a lazy string...): its plain value
        if isinstance(value, base):
            return base.__repr__(value)
    raise TypeError(
        f"@cached cannot make a default key from parameter {name!r}: a {kind.__qualname__} "
        "has no stable, unique text form (its repr may be a memory address, or the same for "
        "two objects). Pass key='...' naming the fields that identify it, e.g. "
        f"key='...:{{{name}.pk}}'"
    )
