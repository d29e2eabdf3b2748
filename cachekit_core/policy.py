"""Per-call caching policy: what a ``get_or_set`` or ``@cached`` call asks of the engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Policy:
    ttl: float | None = None  # None: the cache's default_ttl; math.inf: never expires
    tags: tuple[str, ...] = ()
    stale_ttl: float = 0.0  # seconds a value may be served stale while one refresh runs
    negative_ttl: float | None = None  # cache a None result this long (None: don't cache it)
    early_refresh: float | None = None  # XFetch beta (1.0 is the paper's default)
    lock: bool = True  # take the cross-process lock on a miss
