"""Settings for the Django adapter: the optional ``CACHEKIT`` setting, and the engines behind
``CACHES`` entries that use ``cachekit_django.cache.CachekitCache``.

Engines are shared per process: Django builds one cache backend object per alias *and per
thread*, but an in-process L1, a Redis connection pool and an invalidation listener are worth
having once. Like ``LocMemCache`` (which shares its store by ``LOCATION``), aliases that
describe the same store share one engine.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.crypto import salted_hmac

from cachekit_core import Cache, CacheError, MemoryLayer, RedisLayer

__all__ = [
    "EngineSpec",
    "aclose_all",
    "close_all",
    "engine_for",
    "get_cache",
    "session_write_through",
]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+", "rediss+")  # +cluster, +sentinel
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# OPTIONS of a CachekitCache entry -> RedisLayer keyword.
_REDIS_OPTIONS = {
    "SOCKET_TIMEOUT": "socket_timeout",
    "CONNECT_TIMEOUT": "connect_timeout",
    "MAX_CONNECTIONS": "max_connections",
    "BREAKER_THRESHOLD": "breaker_threshold",
    "BREAKER_COOLDOWN": "breaker_cooldown",
    "CLUSTER": "cluster",
}
# CULL_FREQUENCY is Django's LocMem/DB/file culling knob: accepted so a settings file can
# switch backends, ignored because the in-process layer evicts by LRU instead.
_CACHE_OPTIONS = {"NAMESPACE", "MAX_ENTRIES", "CULL_FREQUENCY", "L1", "L1_TTL", "MAX_BYTES"}
_LAYER_KEYS = {
    "memory": {"BACKEND", "MAXSIZE", "TTL", "MAX_BYTES", "POLICY"},
    "redis": {"BACKEND", "URL", *_REDIS_OPTIONS, "TAG_TTL"},
}


def signing_key(purpose: str) -> bytes:
    """A 32-byte HMAC key for engine payloads, derived from ``SECRET_KEY`` per purpose (the
    secret itself never reaches the engine, and two purposes never share a key)."""
    mac = salted_hmac(f"cachekit_django.{purpose}", "engine-signing-key", algorithm="sha256")
    return mac.digest()


def default_namespace(key_prefix: str) -> str:
    """The engine namespace of a ``CACHES`` entry without ``OPTIONS["NAMESPACE"]``.

    Django gives a backend no alias, and aliases that differ only in ``VERSION`` or
    ``KEY_FUNCTION`` must share data (Django's versioning relies on it), so the namespace comes
    from ``KEY_PREFIX``; prefixes that are not namespace-safe get a digest suffix."""
    if not key_prefix:
        return "django"
    if _NAMESPACE.fullmatch(key_prefix):
        return key_prefix
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", key_prefix)[:48]
    return f"{safe}-{blake2b(key_prefix.encode(), digest_size=6).hexdigest()}"


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Everything that makes two ``CACHES`` entries the same store (and so the same engine)."""

    namespace: str
    redis_url: str | None  # None: in-process only
    memory_name: str  # a non-URL LOCATION names a separate in-process store, as in LocMemCache
    max_entries: int = 10_000
    l1: bool = True
    l1_ttl: float | None = 30.0
    max_bytes: int | None = None
    redis_options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_cache_params(
        cls, location: str | Sequence[str], params: Mapping[str, Any]
    ) -> EngineSpec:
        if not isinstance(location, str):
            # A list names a primary and replicas (Django's RedisCache); cachekit talks to the
            # primary only.
            location = location[0] if location else ""
        options = {str(k).upper(): v for k, v in (params.get("OPTIONS") or {}).items()}
        unknown = set(options) - _CACHE_OPTIONS - set(_REDIS_OPTIONS)
        if unknown:
            raise ImproperlyConfigured(
                f"CACHES OPTIONS {sorted(unknown)} are not understood by CachekitCache; "
                f"valid keys: {sorted(_CACHE_OPTIONS | set(_REDIS_OPTIONS))}"
            )
        is_redis = location.startswith(REDIS_SCHEMES)
        namespace = options.get("NAMESPACE") or default_namespace(params.get("KEY_PREFIX", ""))
        if not _NAMESPACE.fullmatch(str(namespace)):
            raise ImproperlyConfigured(
                f"CACHES OPTIONS NAMESPACE {namespace!r} must be 1-64 of A-Z a-z 0-9 _ . -"
            )
        redis_options = tuple(
            sorted((_REDIS_OPTIONS[k], v) for k, v in options.items() if k in _REDIS_OPTIONS)
        )
        return cls(
            namespace=str(namespace),
            redis_url=location if is_redis else None,
            memory_name="" if is_redis else location,
            max_entries=int(options.get("MAX_ENTRIES", 10_000)),
            l1=bool(options.get("L1", True)),
            # Memory-only: the layer is the store, so Django's timeouts alone decide expiry.
            l1_ttl=options.get("L1_TTL", 30.0) if is_redis else None,
            max_bytes=options.get("MAX_BYTES"),
            redis_options=redis_options,
        )

    def build(self, *, strict: bool) -> Cache:
        """The engine. ``strict``: raise ``CacheUnavailable`` instead of failing open, and no
        L1, so a caller can tell "missing" from "unreachable" (sessions need this)."""
        key = signing_key("cache")
        if self.redis_url is None:
            memory = MemoryLayer(self.max_entries, ttl=None, max_bytes=self.max_bytes)
            return Cache([memory], namespace=self.namespace, secret_key=key)
        layers: list[MemoryLayer | RedisLayer] = [
            _redis_layer(self.redis_url, dict(self.redis_options))
        ]
        if self.l1 and not strict:
            layers.insert(0, MemoryLayer(self.max_entries, self.l1_ttl, max_bytes=self.max_bytes))
        return Cache(layers, namespace=self.namespace, secret_key=key, raise_on_error=strict)


_lock = threading.Lock()
_breaker_lock = threading.Lock()
_engines: dict[tuple[EngineSpec, bool, bytes], Cache] = {}
_default: Cache | None = None


def engine_for(spec: EngineSpec, *, strict: bool = False) -> Cache:
    """The process-wide engine for ``spec`` (built on first use; building does no I/O)."""
    if spec.redis_url is None:
        strict = False  # an in-process store cannot be unreachable: share the one engine
    slot = (spec, strict, signing_key("cache"))  # a new SECRET_KEY is a new engine
    engine = _engines.get(slot)
    if engine is None:
        with _lock:
            engine = _engines.get(slot)
            if engine is None:
                try:
                    engine = _engines[slot] = spec.build(strict=strict)
                except CacheError as exc:
                    raise ImproperlyConfigured(f"CACHES entry for CachekitCache: {exc}") from exc
    return engine


def _setting() -> dict[str, Any]:
    value = getattr(settings, "CACHEKIT", None) or {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured("settings.CACHEKIT must be a dict")
    return dict(value)


def _layer(spec: Any) -> MemoryLayer | RedisLayer:
    if not isinstance(spec, Mapping) or spec.get("BACKEND") not in _LAYER_KEYS:
        raise ImproperlyConfigured(
            'each CACHEKIT["LAYERS"] entry must be a dict with "BACKEND": "memory" or "redis"'
        )
    unknown = set(spec) - _LAYER_KEYS[spec["BACKEND"]]
    if unknown:
        raise ImproperlyConfigured(
            f'CACHEKIT["LAYERS"] {spec["BACKEND"]} layer: unknown keys {sorted(unknown)}'
        )
    if spec["BACKEND"] == "memory":
        return MemoryLayer(
            spec.get("MAXSIZE", 10_000),
            spec.get("TTL", 30),
            max_bytes=spec.get("MAX_BYTES"),
            policy=spec.get("POLICY", "lru"),
        )
    if "URL" not in spec:
        raise ImproperlyConfigured('CACHEKIT["LAYERS"] redis layer needs a "URL"')
    options = {_REDIS_OPTIONS[k]: v for k, v in spec.items() if k in _REDIS_OPTIONS}
    if "TAG_TTL" in spec:
        options["tag_ttl"] = spec["TAG_TTL"]
    return _redis_layer(spec["URL"], options)


# One circuit breaker per Redis server and breaker settings for every engine this module
# builds: the page cache, a CACHES entry and its strict session twin all learn of an outage
# from the first timeout, so one request never waits out a timeout per engine.
_breakers: dict[tuple[str, Any, Any], Any] = {}


def _redis_layer(url: str, options: dict[str, Any]) -> RedisLayer:
    layer = RedisLayer(url, **options)
    key = (url, options.get("breaker_threshold"), options.get("breaker_cooldown"))
    with _breaker_lock:
        layer.breaker = _breakers.setdefault(key, layer.breaker)
    return layer


def build_cache(config: Mapping[str, Any]) -> Cache:
    """A ``Cache`` from a ``CACHEKIT``-style dict (keys this module does not own, such as
    ``HTTP`` or ``SESSIONS``, are left to their readers)."""
    layers = [_layer(spec) for spec in config.get("LAYERS") or [{"BACKEND": "memory"}]]
    secret = config.get("SECRET_KEY") or signing_key("engine")
    try:
        return Cache(
            layers,
            namespace=config.get("NAMESPACE", "cachekit"),
            default_ttl=config.get("DEFAULT_TTL", 300),
            jitter=config.get("JITTER", 0.0),
            serializer=config.get("SERIALIZER", "msgpack"),
            secret_key=secret,
        )
    except CacheError as exc:
        raise ImproperlyConfigured(f"settings.CACHEKIT: {exc}") from exc


def get_cache() -> Cache:
    """The process-wide ``Cache`` described by ``settings.CACHEKIT`` (in-process memory only
    when the setting is absent). Every payload it writes is signed with a key derived from
    ``SECRET_KEY`` unless ``CACHEKIT["SECRET_KEY"]`` is given."""
    global _default
    cache = _default
    if cache is None:
        with _lock:
            if _default is None:
                _default = build_cache(_setting())
            cache = _default
    return cache


def session_write_through() -> bool:
    """``CACHEKIT["SESSIONS"]["WRITE_THROUGH"]``: sessions also go to the database."""
    sessions = _setting().get("SESSIONS") or {}
    return bool(sessions.get("WRITE_THROUGH", False))


def _forget_all() -> list[Cache]:
    global _default
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
        with _breaker_lock:
            _breakers.clear()
        if _default is not None:
            engines.append(_default)
            _default = None
    return engines


def close_all() -> None:
    """Close every engine this module built (they reopen lazily if used again)."""
    for engine in _forget_all():
        engine.close()


async def aclose_all() -> None:
    """``close_all`` from an event loop (ASGI shutdown): also closes this loop's clients."""
    for engine in _forget_all():
        await engine.aclose()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    # Django rebuilds its cache handlers when CACHES changes (override_settings in tests);
    # engines built from the old settings must not keep serving, or L1 would leak between them.
    if setting in ("CACHES", "CACHEKIT", "SECRET_KEY"):
        close_all()


setting_changed.connect(_on_setting_changed, dispatch_uid="cachekit_django.conf")
