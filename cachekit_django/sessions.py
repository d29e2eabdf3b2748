"""A session engine on cachekit: ``SESSION_ENGINE = "cachekit_django.sessions"``.

Sessions live in the ``CACHES`` alias of cachekit's engine (``CACHEKIT["CACHE"]``, default
``"default"``), so they follow the pages to Redis, or in ``SESSION_CACHE_ALIAS`` when the
project sets it (normally a ``CachekitCache`` too). Keys are prefixed like Django's cache
sessions; values are pickled and signed by that cache, so a session stays readable through the
cache API. Set ``CACHEKIT = {"SESSIONS": {"WRITE_THROUGH": True}}`` (or subclass with
``write_through = True``) to keep every session in the database too, as ``cached_db`` does;
that needs ``django.contrib.sessions`` in ``INSTALLED_APPS``.

A cache outage never logs anyone out. Reads use the cache's answers (``CachekitCache.read``:
hit, miss or unavailable, Redis asked past this process's copy), so an unreachable Redis is not
mistaken for an unknown session: with write-through the database answers; without it, the
session key is kept (the request sees an empty session) and the stored session is not
overwritten by that empty one. A new session cannot be created, nor a session deleted, while
the store is unreachable: those raise ``CacheUnavailable``, because a logout that silently left
the session usable would be worse than an error page.

With a ``SESSION_CACHE_ALIAS`` that is not a ``CachekitCache``, Django's plain cache API is
used: it cannot say "unreachable", so only what it raises is taken for that.
"""

from __future__ import annotations

from django.core.cache import caches

from . import conf
from ._async.session_ops import AsyncPlainCacheOps, AsyncSessionOps
from ._session_core import KEY_PREFIX
from ._sync.session_ops import SyncPlainCacheOps, SyncSessionOps
from .cache import CachekitCache

__all__ = ["KEY_PREFIX", "PlainCache", "SessionStore"]


class PlainCache(SyncPlainCacheOps, AsyncPlainCacheOps):
    """A Django cache that is not a ``CachekitCache``, answering as one does (it never says
    UNAVAILABLE: Django's API cannot)."""


class SessionStore(SyncSessionOps, AsyncSessionOps):
    """Cache-backed sessions. The database methods inherited from Django's ``db`` store are used
    only with write-through (as ``cached_db`` does); otherwise no query is ever made.

    The sync methods are generated from the async ones (``_async/session_ops.py``)."""

    def __init__(self, session_key: str | None = None) -> None:
        self._cache = cache = caches[conf.session_alias()]
        self._ops = cache if isinstance(cache, CachekitCache) else PlainCache(cache)
        self._write_through = self._uses_database()
        self._unreadable = False
        super().__init__(session_key)
