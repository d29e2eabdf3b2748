"""``HttpCache``: the response cache both adapters drive (sync and async on one object)."""

from ._async.flow import AsyncHttpCache
from ._base import (
    BYPASS,
    HIT,
    MISS,
    STALE,
    HttpSettings,
    Lookup,
    Request,
    Response,
    StoredResponse,
    VaryMarker,
    ViewOptions,
    query_allow_list,
)
from ._sync.flow import SyncHttpCache

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
    "StoredResponse",
    "VaryMarker",
    "ViewOptions",
    "query_allow_list",
]


class HttpCache(SyncHttpCache, AsyncHttpCache):
    """Looks up, serves and stores HTTP responses on a ``Cache`` by the rules of ``http``."""
