"""Exceptions raised by cachekit.

CacheError
├── ConfigurationError     a setting or extra is wrong or missing (raised at construction)
├── SerializationError     a value cannot be encoded by the configured serializer
└── CacheUnavailable       a shared layer failed and ``raise_on_error=True``
"""

from __future__ import annotations


class CacheError(Exception):
    """Base class of every error cachekit raises."""


class ConfigurationError(CacheError, ValueError):
    """A setting, URL or missing extra makes the cache unusable as configured."""


class CacheUnavailable(CacheError):
    """A shared layer failed and the cache was built with ``raise_on_error=True``."""


class SerializationError(CacheError, TypeError):
    """A value cannot be encoded by the configured serializer."""
