"""cachekit's Django adapter: ``CachekitCache`` (a ``CACHES`` backend), the session engine
``cachekit_django.sessions``, and ``get_cache()`` for the engine of pages, fragments and
invalidation: that of the ``CACHES`` alias named by ``CACHEKIT["CACHE"]`` (default
``"default"``).

Names are imported on first use, so importing this package needs no configured settings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cache import CachekitCache
    from .conf import get_cache
    from .decorators import CacheViewMixin, cache_view
    from .invalidation import invalidate_model, invalidate_tags, tag_for

__all__ = [
    "CacheViewMixin",
    "CachekitCache",
    "cache_view",
    "get_cache",
    "invalidate_model",
    "invalidate_tags",
    "tag_for",
]

# public name -> the submodule defining it
_LAZY = {
    "CachekitCache": ".cache",
    "get_cache": ".conf",
    "CacheViewMixin": ".decorators",
    "cache_view": ".decorators",
    "invalidate_model": ".invalidation",
    "invalidate_tags": ".invalidation",
    "tag_for": ".invalidation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
