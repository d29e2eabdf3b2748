"""``HttpCache``: the response cache both adapters drive (sync and async on one object)."""

from ._async.httpcache import AsyncHttpCache
from ._httpbase import (
    BYPASS,
    HIT,
    MISS,
    STALE,
    HttpSettings,
    Lookup,
    Request,
    Response,
    ViewOptions,
)
from ._sync.httpcache import SyncHttpCache

__all__ = [
    "BYPASS",
    "HIT",
    "MISS",
    "STALE",
    "HttpCache",
    "HttpSettings",
    "Lookup",
    "Request",
    "Response",
    "ViewOptions",
]


class HttpCache(SyncHttpCache, AsyncHttpCache):
    """Looks up, serves and stores HTTP responses on a ``Cache`` by the rules of ``http``."""
