"""``CachekitCache``: Django's cache API (``BaseCache``) on the layered cachekit engine.

    CACHES = {"default": {
        "BACKEND": "cachekit_django.cache.CachekitCache",
        "LOCATION": "redis://127.0.0.1:6379/1",  # in-process L1 + Redis L2; "" = in-process only
        "TIMEOUT": 300,  # also the default TTL of pages and fragments that name none
        "OPTIONS": {"NAMESPACE": "shop", "MAX_ENTRIES": 10_000, "L1_TTL": 30},
    }}

The engine of this alias (``CACHEKIT["CACHE"]``, default ``"default"``) also serves pages,
fragments, model invalidation and sessions: see ``cachekit_django.conf``.

Values are pickled here and reach the engine as bytes. The engine signs every payload it writes
to Redis (HMAC, key derived from ``SECRET_KEY``) and verifies it before handing it back, so
``pickle.loads`` only ever sees bytes this project wrote. L1 keeps those bytes rather than the
object, so mutating a returned value never changes the cache (Django's contract). Plain ints are
stored as they are, so ``incr`` stays one atomic engine operation.

A Redis outage never raises from these methods but ``incr``/``decr`` (``CacheUnavailable``: a
counter that failed open would admit what it exists to limit): reads miss (or are served by L1),
writes land in L1 only, exactly as the engine fails open. Besides Django's API, ``read``,
``write``, ``insert`` and ``invalidate`` (and their ``a``-prefixed twins) return the engine's
answers, which say when Redis could not be reached: the session store is built on those.
"""

from __future__ import annotations

from ._async.cache_ops import AsyncCacheOps
from ._sync.cache_ops import SyncCacheOps

__all__ = ["CachekitCache"]


class CachekitCache(SyncCacheOps, AsyncCacheOps):
    """Django cache backend on ``cachekit_core.Cache``; ``self.engine`` is that engine.

    The sync methods are generated from the async ones (``_async/cache_ops.py``), which call
    the engine's own coroutines: no thread hop."""
