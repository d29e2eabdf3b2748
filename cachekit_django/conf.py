"""Settings for the Django adapter: which engine each part of it uses, and how a ``CACHES``
entry that uses ``cachekit_django.cache.CachekitCache`` becomes an engine.

One configuration. Pages (``CacheMiddleware``, ``cache_view``), ``{% cachefragment %}``,
model invalidation, the metrics view and ``manage.py cachekit`` run on one engine, returned
by ``engine()``: the engine of the ``CACHES`` alias named by ``CACHEKIT["CACHE"]`` (default
``"default"``), which must use ``CachekitCache``. The session engine uses that alias too,
unless the project sets ``SESSION_CACHE_ALIAS``. Pointing the alias's ``LOCATION`` at Redis
therefore moves all of them to Redis. ``CACHEKIT`` holds only what is not a cache:
``CACHE``, ``HTTP`` and ``SESSIONS``.

Deprecated, kept for one release (each emits a ``DeprecationWarning`` once per process that
quotes the ``CACHES`` entry to write instead):

- engine keys in ``CACHEKIT`` (``LAYERS``, ``NAMESPACE``, ``DEFAULT_TTL``, ``JITTER``,
  ``SERIALIZER``, ``SECRET_KEY``): ``engine()`` is the engine they describe, as before;
- no ``CACHEKIT["CACHE"]`` while ``CACHES["default"]`` is not a ``CachekitCache``:
  ``engine()`` is an in-process engine of its own, as before.

Engines are shared per process: Django builds one cache backend object per alias *and per
thread*, but an in-process L1, a Redis connection pool and an invalidation listener are worth
having once. Like ``LocMemCache`` (which shares its store by ``LOCATION``), aliases that
describe the same store share one engine. The deprecated settings are translated into the same
description (``EngineSpec``), so they build exactly the engine their ``CACHES`` equivalent
builds, and share it when both are configured.
"""

from __future__ import annotations

import math
import re
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from hashlib import blake2b
from typing import Any, Final

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS
from django.core.cache.backends.base import BaseCache
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.crypto import salted_hmac
from django.utils.module_loading import import_string

from cachekit_core import Cache, CacheError, MemoryLayer, RedisLayer
from cachekit_core.layers.memory import DEFAULT_MAX_BYTES
from cachekit_core.layers.topology import redact_url

__all__ = [
    "BACKEND",
    "DEPRECATED_KEYS",
    "LAYER_KEYS",
    "NAMESPACE_RE",
    "EngineSpec",
    "Registry",
    "Source",
    "aclose_all",
    "alias_spec",
    "cache_alias",
    "close_all",
    "deprecated_layers",
    "engine",
    "engine_for",
    "get_cache",
    "is_cachekit_alias",
    "registry",
    "session_alias",
    "session_write_through",
    "source",
    "spec_from_cachekit",
]

BACKEND: Final = "cachekit_django.cache.CachekitCache"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+", "rediss+")  # +cluster, +sentinel
NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# OPTIONS of a CachekitCache entry (and keys of a deprecated "redis" layer) -> RedisLayer keyword.
_REDIS_OPTIONS = {
    "SOCKET_TIMEOUT": "socket_timeout",
    "CONNECT_TIMEOUT": "connect_timeout",
    "MAX_CONNECTIONS": "max_connections",
    "BREAKER_THRESHOLD": "breaker_threshold",
    "BREAKER_COOLDOWN": "breaker_cooldown",
    "CLUSTER": "cluster",
    "TAG_TTL": "tag_ttl",
}
# CULL_FREQUENCY is Django's LocMem/DB/file culling knob: accepted so a settings file can
# switch backends, ignored because the in-process layer evicts by its POLICY instead.
_CACHE_OPTIONS = {
    "NAMESPACE",
    "MAX_ENTRIES",
    "CULL_FREQUENCY",
    "L1",
    "L1_TTL",
    "MAX_BYTES",
    "POLICY",
    "JITTER",
    "SERIALIZER",
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
}
# Serializers a CachekitCache engine can use: Django's values reach it as pickled bytes and
# pages carry their body as bytes, which JSON cannot hold.
_SERIALIZERS = ("msgpack", "pickle")
# Deprecated CACHEKIT["LAYERS"] entries.
LAYER_KEYS = {
    "memory": {"BACKEND", "MAXSIZE", "TTL", "MAX_BYTES", "POLICY"},
    "redis": {"BACKEND", "URL", *_REDIS_OPTIONS},
}
#: ``CACHEKIT`` keys that configured an engine before the one configuration (deprecated).
DEPRECATED_KEYS: Final = (
    "LAYERS",
    "NAMESPACE",
    "DEFAULT_TTL",
    "JITTER",
    "SERIALIZER",
    "SECRET_KEY",
)


def signing_key(purpose: str) -> bytes:
    """A 32-byte HMAC key for engine payloads, derived from ``SECRET_KEY`` per purpose (the
    secret itself never reaches the engine, and two purposes never share a key)."""
    return _derived(purpose, None)


def fallback_signing_keys(purpose: str) -> tuple[bytes, ...]:
    """The keys ``signing_key(purpose)`` was under each of ``SECRET_KEY_FALLBACKS``: the
    engine verifies with them too (never signs), so rotating ``SECRET_KEY`` with the old one
    in the fallbacks keeps every session and cached value readable."""
    return tuple(_derived(purpose, old) for old in getattr(settings, "SECRET_KEY_FALLBACKS", ()))


def _derived(purpose: str, secret: str | bytes | None) -> bytes:
    # secret=None: settings.SECRET_KEY (Django's own choice, as in its signing module).
    mac = salted_hmac(
        f"cachekit_django.{purpose}", "engine-signing-key", secret=secret, algorithm="sha256"
    )
    return mac.digest()


def _fallbacks(value: Any) -> tuple[str | bytes, ...]:
    """``OPTIONS["SECRET_KEY_FALLBACKS"]`` as a hashable tuple (a list of older secrets)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ImproperlyConfigured(
            'CACHES OPTIONS "SECRET_KEY_FALLBACKS" must be a list of older OPTIONS "SECRET_KEY"s'
        )
    return tuple(value)


def default_namespace(key_prefix: str) -> str:
    """The engine namespace of a ``CACHES`` entry without ``OPTIONS["NAMESPACE"]``.

    Django gives a backend no alias, and aliases that differ only in ``VERSION`` or
    ``KEY_FUNCTION`` must share data (Django's versioning relies on it), so the namespace comes
    from ``KEY_PREFIX``; prefixes that are not namespace-safe get a digest suffix."""
    if not key_prefix:
        return "django"
    if NAMESPACE_RE.fullmatch(key_prefix):
        return key_prefix
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", key_prefix)[:48]
    return f"{safe}-{blake2b(key_prefix.encode(), digest_size=6).hexdigest()}"


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Everything that makes two ``CACHES`` entries the same store (and so the same engine)."""

    namespace: str
    redis_url: str | None  # None: in-process only
    memory_name: str = ""  # a non-URL LOCATION names a separate in-process store, as in LocMem
    default_ttl: float = 300.0  # the entry's TIMEOUT (math.inf: None, forever)
    max_entries: int = 10_000
    l1: bool = True
    l1_ttl: float | None = 30.0  # None when in-process only: there the layer is the store
    max_bytes: int | None = DEFAULT_MAX_BYTES  # 64 MiB; MAX_BYTES: None for no byte bound
    policy: str | Callable[..., Any] = "lru"
    jitter: float = 0.0
    serializer: str = "msgpack"
    secret_key: str | bytes | None = field(default=None, repr=False)  # None: from SECRET_KEY
    # Older OPTIONS["SECRET_KEY"]s, verifying only (with SECRET_KEY: its SECRET_KEY_FALLBACKS).
    secret_key_fallbacks: tuple[str | bytes, ...] = field(default=(), repr=False)
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
        if not NAMESPACE_RE.fullmatch(str(namespace)):
            raise ImproperlyConfigured(
                f"CACHES OPTIONS NAMESPACE {namespace!r} must be 1-64 of A-Z a-z 0-9 _ . -"
            )
        serializer = options.get("SERIALIZER", "msgpack")
        if serializer not in _SERIALIZERS:
            raise ImproperlyConfigured(
                f"CACHES OPTIONS SERIALIZER {serializer!r}: use one of {list(_SERIALIZERS)} "
                "(Django's values and pages are stored as bytes, which JSON cannot hold)"
            )
        redis_options = tuple(
            sorted((_REDIS_OPTIONS[k], v) for k, v in options.items() if k in _REDIS_OPTIONS)
        )
        # TIMEOUT read exactly as Django reads it (an int; None is forever): pages and
        # fragments that name no TTL get the same default as the alias's cache.set().
        timeout = BaseCache(dict(params)).default_timeout
        return cls(
            namespace=str(namespace),
            redis_url=location if is_redis else None,
            memory_name="" if is_redis else location,
            default_ttl=math.inf if timeout is None else float(timeout),
            max_entries=int(options.get("MAX_ENTRIES", 10_000)),
            l1=bool(options.get("L1", True)),
            # Memory-only: the layer is the store, so the TTL each write asks for decides.
            l1_ttl=options.get("L1_TTL", 30.0) if is_redis else None,
            max_bytes=options.get("MAX_BYTES", DEFAULT_MAX_BYTES),
            policy=options.get("POLICY", "lru"),
            jitter=float(options.get("JITTER", 0.0)),
            serializer=str(serializer),
            secret_key=options.get("SECRET_KEY"),
            secret_key_fallbacks=_fallbacks(options.get("SECRET_KEY_FALLBACKS", ())),
            redis_options=redis_options,
        )

    def build(self) -> Cache:
        """The engine (fails open: its answers say when Redis could not be reached)."""
        options: dict[str, Any] = {
            "namespace": self.namespace,
            "default_ttl": self.default_ttl,
            "jitter": self.jitter,
            "serializer": self.serializer,
        }
        if self.secret_key is None:
            options["secret_key"] = signing_key("cache")
            options["secret_key_fallbacks"] = fallback_signing_keys("cache")
        else:
            options["secret_key"] = self.secret_key
            options["secret_key_fallbacks"] = self.secret_key_fallbacks
        if self.redis_url is None:
            # No layer TTL: an in-process store keeps an entry exactly as long as the write
            # asked (cache_view(ttl=600) gets 600 s, not the 30 s an L1 TTL would cap it at).
            memory = MemoryLayer(
                self.max_entries, ttl=None, max_bytes=self.max_bytes, policy=self.policy
            )
            return Cache([memory], **options)
        layers: list[MemoryLayer | RedisLayer] = [
            registry.redis_layer(self.redis_url, dict(self.redis_options))
        ]
        if self.l1:
            l1 = MemoryLayer(
                self.max_entries, self.l1_ttl, max_bytes=self.max_bytes, policy=self.policy
            )
            layers.insert(0, l1)
        return Cache(layers, **options)

    def describe(self) -> str:
        """Where this engine keeps entries, for messages (passwords redacted)."""
        if self.redis_url is None:
            store = f"in-process memory {self.memory_name!r}" if self.memory_name else None
            where = store or "in-process memory only"
        else:
            l1 = " behind an in-process L1" if self.l1 else ""
            where = f"Redis at {redact_url(self.redis_url)}{l1}"
        return f"{where}, namespace {self.namespace!r}"

    def caches_entry(self) -> dict[str, Any]:
        """The ``CACHES`` entry that builds this engine (what deprecation messages quote)."""
        entry: dict[str, Any] = {"BACKEND": BACKEND}
        location = self.redis_url or self.memory_name
        if location:
            entry["LOCATION"] = location
        if self.default_ttl != 300:
            ttl = self.default_ttl
            entry["TIMEOUT"] = (
                None if ttl == math.inf else int(ttl) if float(ttl).is_integer() else ttl
            )
        # NAMESPACE always: without it, the namespace would come from KEY_PREFIX.
        options: dict[str, Any] = {"NAMESPACE": self.namespace}
        defaults = EngineSpec("", None)
        named = {
            "max_entries": "MAX_ENTRIES",
            "max_bytes": "MAX_BYTES",
            "policy": "POLICY",
            "jitter": "JITTER",
            "serializer": "SERIALIZER",
            "secret_key": "SECRET_KEY",
            "secret_key_fallbacks": "SECRET_KEY_FALLBACKS",
        }
        if self.redis_url is not None:
            named.update(l1="L1", l1_ttl="L1_TTL")
        for spec_field in fields(self):
            name = named.get(spec_field.name)
            value = getattr(self, spec_field.name)
            if name is not None and value != getattr(defaults, spec_field.name):
                options[name] = value
        if self.redis_url is not None and not self.l1:
            for name in ("MAX_ENTRIES", "MAX_BYTES", "POLICY", "L1_TTL"):
                options.pop(name, None)  # they configure the L1 there is none of
        upper = {keyword: name for name, keyword in _REDIS_OPTIONS.items()}
        options.update((upper[keyword], value) for keyword, value in self.redis_options)
        entry["OPTIONS"] = options
        return entry


# --------------------------------------------------------------------------- shared engines


class Registry:
    """What this module shares per process: engines by description, one circuit breaker per
    Redis server, the engine ``engine()`` resolved to, and whether the deprecation was said.

    One object rather than loose module globals, so that forgetting everything (settings
    changed in a test, shutdown) is one call that cannot miss a piece.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.breaker_lock = threading.Lock()
        self.engines: dict[tuple[EngineSpec, bytes, tuple[bytes, ...]], Cache] = {}
        # One circuit breaker per Redis server and breaker settings for every engine built
        # here: the pages' engine and each CACHES entry all learn of an outage from the first
        # timeout, so one request never waits out one per engine.
        self.breakers: dict[tuple[str, Any, Any], Any] = {}
        self.current: Cache | None = None  # engine(), once resolved
        # Bumped by forget(): backends re-fetch their engine, and a resolution racing it is
        # not remembered.
        self.generation = 0
        self.warned = False

    def engine_for(self, spec: EngineSpec) -> Cache:
        # A new SECRET_KEY (or SECRET_KEY_FALLBACKS) is a new engine.
        slot = (spec, signing_key("cache"), fallback_signing_keys("cache"))
        engine = self.engines.get(slot)
        if engine is None:
            with self.lock:
                engine = self.engines.get(slot)
                if engine is None:
                    try:
                        engine = self.engines[slot] = spec.build()
                    except CacheError as exc:
                        where = spec.describe()  # not repr(): the URL may hold a password
                        raise ImproperlyConfigured(f"cachekit engine ({where}): {exc}") from exc
        return engine

    def redis_layer(self, url: str, options: dict[str, Any]) -> RedisLayer:
        key = (url, options.get("breaker_threshold"), options.get("breaker_cooldown"))
        with self.breaker_lock:  # constructing a layer does no I/O
            # The first layer for a server makes the breaker; every later one is given it.
            layer = RedisLayer(url, breaker=self.breakers.get(key), **options)
            self.breakers.setdefault(key, layer.breaker)
        return layer

    def remember(self, engine: Cache, generation: int) -> None:
        with self.lock:
            if self.generation == generation:
                self.current = engine

    def forget(self) -> list[Cache]:
        with self.lock:
            engines = list(self.engines.values())
            self.engines.clear()
            with self.breaker_lock:
                self.breakers.clear()
            self.current = None
            self.generation += 1
            # Settings only change in tests: each configuration gets its own warning there.
            self.warned = False
        return engines


#: The one registry of this process (``CachekitCache`` checks its ``generation``).
registry = Registry()


def engine_for(spec: EngineSpec) -> Cache:
    """The process-wide engine for ``spec`` (built on first use; building does no I/O)."""
    return registry.engine_for(spec)


# --------------------------------------------------------------------------- which engine


def _setting() -> dict[str, Any]:
    value = getattr(settings, "CACHEKIT", None) or {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured("settings.CACHEKIT must be a dict")
    return dict(value)


def cache_alias() -> str:
    """``CACHEKIT["CACHE"]``: the ``CACHES`` alias whose engine ``engine()`` returns."""
    alias = _setting().get("CACHE", DEFAULT_CACHE_ALIAS)
    if not isinstance(alias, str):
        raise ImproperlyConfigured('CACHEKIT["CACHE"] must be the name of a CACHES alias')
    return alias


def session_alias() -> str:
    """The ``CACHES`` alias of ``cachekit_django.sessions``: ``SESSION_CACHE_ALIAS`` when the
    project sets it, else the engine's alias, so that sessions follow the pages to Redis."""
    if settings.is_overridden("SESSION_CACHE_ALIAS"):
        return str(settings.SESSION_CACHE_ALIAS)
    return cache_alias()


def is_cachekit_alias(alias: str) -> bool | None:
    """Whether ``CACHES[alias]`` uses ``CachekitCache`` (or a subclass); None: no such alias."""
    entry = getattr(settings, "CACHES", {}).get(alias)
    if entry is None:
        return None
    backend = entry.get("BACKEND", "")
    if backend == BACKEND:
        return True
    try:
        backend_class = import_string(backend)
    except ImportError:
        return False  # Django reports it when the alias is used
    # By name along the MRO (a subclass counts): importing cache.py here would be a cycle.
    return isinstance(backend_class, type) and any(
        f"{cls.__module__}.{cls.__qualname__}" == BACKEND for cls in backend_class.__mro__
    )


def alias_spec(alias: str) -> EngineSpec:
    """The engine of ``CACHES[alias]``; ImproperlyConfigured unless it is a CachekitCache."""
    found = is_cachekit_alias(alias)
    if not found:
        what = "is not defined" if found is None else "does not use CachekitCache"
        raise ImproperlyConfigured(
            f"CACHES[{alias!r}] {what}, but cachekit's pages, fragments and invalidation run "
            f'on its engine (CACHEKIT["CACHE"] = {alias!r}). Define it with "BACKEND": '
            f'"{BACKEND}", or name a CachekitCache alias in CACHEKIT["CACHE"].'
        )
    params = dict(settings.CACHES[alias])
    params.pop("BACKEND", None)
    return EngineSpec.from_cache_params(params.pop("LOCATION", ""), params)


@dataclass(frozen=True, slots=True)
class Source:
    """Where the engine of ``engine()`` comes from."""

    alias: str | None  # the CACHES alias whose engine it is; None: no alias describes it
    spec: EngineSpec
    deprecation: str | None = None  # the settings are deprecated: why, and what to write


def source() -> Source:
    """Which engine ``engine()`` returns, worked out from the settings without building it.

    ImproperlyConfigured when ``CACHEKIT["CACHE"]`` names no CachekitCache alias, or comes
    with the deprecated engine keys (two answers to one question)."""
    config = _setting()
    deprecated = [key for key in DEPRECATED_KEYS if key in config]
    if "CACHE" in config:
        alias = cache_alias()
        if deprecated:
            raise ImproperlyConfigured(
                f'CACHEKIT["CACHE"] names the engine\'s CACHES alias, so '
                f"{_keys(deprecated)} would configure a second one: configure "
                f"CACHES[{alias!r}] instead (its OPTIONS take NAMESPACE, JITTER, SERIALIZER and "
                "SECRET_KEY, its TIMEOUT is DEFAULT_TTL) and remove them from CACHEKIT"
            )
        return Source(alias, alias_spec(alias))
    default_is_cachekit = is_cachekit_alias(DEFAULT_CACHE_ALIAS)
    if not deprecated and default_is_cachekit:
        return Source(DEFAULT_CACHE_ALIAS, alias_spec(DEFAULT_CACHE_ALIAS))
    spec = spec_from_cachekit(config)
    if default_is_cachekit and alias_spec(DEFAULT_CACHE_ALIAS) == spec:
        message = (
            f'{_deprecated(deprecated)}: CACHES["default"] already describes the same '
            f"engine, so remove {_keys(deprecated)}."
        )
        return Source(DEFAULT_CACHE_ALIAS, spec, message)
    return Source(None, spec, _deprecation(deprecated, spec, config))


def engine() -> Cache:
    """The engine of pages, fragments, model invalidation, the metrics view and
    ``manage.py cachekit`` (and of sessions, unless ``SESSION_CACHE_ALIAS`` is set):
    ``caches[CACHEKIT["CACHE"]].engine``, resolved once per settings."""
    current = registry.current
    if current is not None:
        return current
    generation = registry.generation
    found = source()
    # The alias's CachekitCache serves engine_for(its spec) too: one engine per store.
    current = engine_for(found.spec)
    registry.remember(current, generation)
    if found.deprecation is not None and not registry.warned:
        registry.warned = True
        warnings.warn(found.deprecation, DeprecationWarning, stacklevel=2)
    return current


def get_cache() -> Cache:
    """``engine()``, under the name ``cachekit_django`` has always exported."""
    return engine()


# --------------------------------------------------------------------------- deprecated


def _keys(keys: Sequence[str]) -> str:
    return ", ".join(f'CACHEKIT["{key}"]' for key in keys)


def _deprecated(keys: Sequence[str]) -> str:
    verb = "is" if len(keys) == 1 else "are"
    return f"{_keys(keys)} {verb} deprecated and will be removed in the next release"


class _Verbatim:
    """A value quoted in a message as source text rather than as its repr."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _free_alias(caches_setting: Mapping[str, Any]) -> str:
    alias, n = "cachekit", 1
    while alias in caches_setting:
        n += 1
        alias = f"cachekit{n}"
    return alias


def _deprecation(keys: Sequence[str], spec: EngineSpec, config: Mapping[str, Any]) -> str:
    """The warning for deprecated settings: what is deprecated and the exact equivalent."""
    caches_setting = getattr(settings, "CACHES", {})
    if keys:
        what = _deprecated(keys)
    else:
        default = caches_setting.get(DEFAULT_CACHE_ALIAS, {}).get("BACKEND", "undefined")
        what = (
            f'CACHES["default"] is not a CachekitCache ({default}), so cachekit\'s pages, '
            "fragments and invalidation run on an in-process engine of their own; this "
            "fallback is deprecated and will be removed in the next release"
        )
    entry = spec.caches_entry()
    if "LOCATION" in entry and spec.redis_url is not None:
        entry["LOCATION"] = redact_url(entry["LOCATION"])  # never log a password
    if "SECRET_KEY" in entry["OPTIONS"]:
        entry["OPTIONS"]["SECRET_KEY"] = _Verbatim('<your CACHEKIT["SECRET_KEY"]>')
    alias = _free_alias(caches_setting)
    cachekit = {key: value for key, value in config.items() if key not in DEPRECATED_KEYS}
    cachekit["CACHE"] = alias
    notes = ""
    if entry["OPTIONS"].pop("SERIALIZER", None) == "json":
        notes = (
            ' CACHEKIT["SERIALIZER"] = "json" has no equivalent: pages and Django\'s values are '
            "bytes, which JSON cannot hold."
        )
    return (
        f"{what}. Caches are configured in CACHES. The same engine: "
        f"CACHES[{alias!r}] = {entry!r} and CACHEKIT = {cachekit!r}.{notes} To keep pages, "
        'sessions and Django\'s cache API in one store, give CACHES["default"] that LOCATION, '
        'TIMEOUT and OPTIONS instead and leave CACHEKIT["CACHE"] out.'
    )


def deprecated_layers(layers: Any) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """The memory and redis entries of a deprecated ``CACHEKIT["LAYERS"]``."""
    if not isinstance(layers, list | tuple):
        raise ImproperlyConfigured('CACHEKIT["LAYERS"] must be a list')
    for layer in layers:
        if not isinstance(layer, Mapping) or layer.get("BACKEND") not in LAYER_KEYS:
            raise ImproperlyConfigured(
                'each CACHEKIT["LAYERS"] entry must be a dict with "BACKEND": "memory" or "redis"'
            )
        unknown = set(layer) - LAYER_KEYS[layer["BACKEND"]]
        if unknown:
            raise ImproperlyConfigured(
                f'CACHEKIT["LAYERS"] {layer["BACKEND"]} layer: unknown keys {sorted(unknown)}'
            )
        if layer["BACKEND"] == "redis" and "URL" not in layer:
            raise ImproperlyConfigured('CACHEKIT["LAYERS"] redis layer needs a "URL"')
    backends = [layer["BACKEND"] for layer in layers]
    if backends not in (["memory"], ["redis"], ["memory", "redis"]):
        raise ImproperlyConfigured(
            'CACHEKIT["LAYERS"] must be [memory], [redis] or [memory, redis] (L1 in front of L2)'
        )
    memory = layers[0] if backends[0] == "memory" else None
    redis = layers[-1] if backends[-1] == "redis" else None
    return memory, redis


def spec_from_cachekit(config: Mapping[str, Any]) -> EngineSpec:
    """The engine the deprecated ``CACHEKIT`` engine keys describe (in-process memory without
    ``LAYERS``), as the ``CACHES`` entry that builds the same engine describes it."""
    memory, redis = deprecated_layers(config.get("LAYERS") or [{"BACKEND": "memory"}])
    default_ttl = config.get("DEFAULT_TTL", 300)
    found: dict[str, Any] = {
        "namespace": config.get("NAMESPACE", "cachekit"),
        "redis_url": None if redis is None else redis["URL"],
        "default_ttl": math.inf if default_ttl is None else default_ttl,
        "jitter": config.get("JITTER", 0.0),
        "serializer": config.get("SERIALIZER", "msgpack"),
        "secret_key": config.get("SECRET_KEY"),
    }
    if memory is not None:
        found["max_entries"] = memory.get("MAXSIZE", 10_000)
        found["max_bytes"] = memory.get("MAX_BYTES", DEFAULT_MAX_BYTES)
        found["policy"] = memory.get("POLICY", "lru")
    if redis is None:
        # In-process only: the layer's TTL would cap every entry (a cache_view(ttl=600) page
        # at 30 s); the TTL each write asks for decides instead, as for CACHES entries.
        found["l1_ttl"] = None
    else:
        found["l1"] = memory is not None
        found["l1_ttl"] = 30.0 if memory is None else memory.get("TTL", 30)
        found["redis_options"] = tuple(
            sorted((_REDIS_OPTIONS[k], v) for k, v in redis.items() if k in _REDIS_OPTIONS)
        )
    return EngineSpec(**found)


# --------------------------------------------------------------------------- other settings


def session_write_through() -> bool:
    """``CACHEKIT["SESSIONS"]["WRITE_THROUGH"]``: sessions also go to the database."""
    sessions = _setting().get("SESSIONS") or {}
    return bool(sessions.get("WRITE_THROUGH", False))


def close_all() -> None:
    """Close every engine this module built (they reopen lazily if used again)."""
    for built in registry.forget():
        built.close()


async def aclose_all() -> None:
    """``close_all`` from an event loop (ASGI shutdown): also closes this loop's clients."""
    for built in registry.forget():
        await built.aclose()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    # Django rebuilds its cache handlers when CACHES changes (override_settings in tests);
    # engines built from the old settings must not keep serving, or L1 would leak between them.
    if setting in ("CACHES", "CACHEKIT", "SECRET_KEY", "SECRET_KEY_FALLBACKS"):
        close_all()


setting_changed.connect(_on_setting_changed, dispatch_uid="cachekit_django.conf")
