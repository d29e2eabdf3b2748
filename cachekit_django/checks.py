"""System checks (``manage.py check``, and at start-up of every management command).

=============== ==========================================================================
cachekit.E001   ``CACHEKIT`` is not a dict
cachekit.E002   ``CACHEKIT`` has an unknown key (a typo would otherwise be silently ignored)
cachekit.E003   a ``CACHEKIT`` value has the wrong type or range
cachekit.E004   ``CACHEKIT["NAMESPACE"]`` (deprecated) is not 1-64 of ``A-Z a-z 0-9 _ . -``
cachekit.E005   a ``CACHEKIT["LAYERS"]`` entry (deprecated): unknown backend, unknown key,
                missing URL, or layers other than [memory], [redis], [memory, redis]
cachekit.E006   ``CACHEKIT["HTTP"]`` is invalid
cachekit.E007   an engine cannot be built: the ``OPTIONS`` of a ``CachekitCache`` alias, or
                the deprecated ``CACHEKIT`` engine keys (e.g. a bad Redis URL scheme)
cachekit.E008   ``CACHEKIT["CACHE"]`` names no ``CACHES`` alias, or one that is not a
                ``CachekitCache``
cachekit.E009   ``CACHEKIT["CACHE"]`` comes with deprecated engine keys (``LAYERS``, ...):
                two answers to "which engine?"
cachekit.W001   a Redis that cachekit uses does not answer PING: the pages' engine's, and
                every ``CachekitCache`` alias's
cachekit.W002   ``CacheMiddleware`` sits below middleware whose cookies or ``Vary`` it must see
cachekit.W003   two parts silently use different stores: pages, fragments and invalidation
                run on an engine other than ``CACHES["default"]``'s (deprecated ``CACHEKIT``
                engine keys, or a ``CACHES["default"]`` that is not a ``CachekitCache``);
                sessions stay in each process's memory while pages are in Redis; or two
                in-process ``CachekitCache`` aliases with one ``LOCATION`` and namespace get
                separate stores (their ``TIMEOUT`` or ``OPTIONS`` differ)
=============== ==========================================================================

An unreachable Redis is a warning, not an error: cachekit fails open (the site runs on the
remaining layers), and an error would stop ``migrate`` and ``runserver`` during an outage.

What W003 leaves alone: a ``CACHEKIT["CACHE"]`` other than ``"default"``, or a
``SESSION_CACHE_ALIAS`` other than the engine's alias, is a store the project chose by name;
only a split nobody asked for, or one that loses state between processes, is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.cache import DEFAULT_CACHE_ALIAS
from django.core.exceptions import ImproperlyConfigured

from cachekit_core import CacheError
from cachekit_core.layers.topology import Topology, redact_url

from . import conf

KNOWN_KEYS = {
    "CACHE": (str,),
    "HTTP": (dict,),
    "SESSIONS": (dict,),
    # Deprecated: they configure the engine, which CACHES does now.
    "LAYERS": (list, tuple),
    "NAMESPACE": (str,),
    "DEFAULT_TTL": (int, float, type(None)),
    "JITTER": (int, float),
    "SERIALIZER": (str,),
    "SECRET_KEY": (str, bytes),
}
SERIALIZERS = ("msgpack", "json", "pickle")
MIDDLEWARE = "cachekit_django.middleware.CacheMiddleware"
SESSION_ENGINE = "cachekit_django.sessions"
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
# Middleware whose response processing adds Set-Cookie or Vary: it must run before ours stores.
MUST_BE_BELOW = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.locale.LocaleMiddleware",
)
ENGINE_USERS = "pages, fragments and invalidation"


def _error(
    msg: str, id: str, hint: str | None = None, obj: str = "settings.CACHEKIT"
) -> checks.CheckMessage:
    return checks.Error(msg, hint=hint, obj=obj, id=id)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001-E009: the ``CACHEKIT`` setting and the engines ``CACHES`` describes."""
    config = getattr(settings, "CACHEKIT", None)
    if config is None:
        return _check_engines({})
    if not isinstance(config, Mapping):
        return [_error(f"CACHEKIT must be a dict, not {type(config).__name__}.", "cachekit.E001")]
    errors = []
    for key, value in config.items():
        if key not in KNOWN_KEYS:
            errors.append(
                _error(
                    f"CACHEKIT has an unknown key {key!r}.",
                    "cachekit.E002",
                    f"Valid keys: {', '.join(sorted(KNOWN_KEYS))}.",
                )
            )
        elif not isinstance(value, KNOWN_KEYS[key]) or isinstance(value, bool):
            wanted = " or ".join(t.__name__ for t in KNOWN_KEYS[key])
            errors.append(
                _error(f'CACHEKIT["{key}"] must be {wanted}, not {value!r}.', "cachekit.E003")
            )
    if errors:
        return errors  # the rest would only repeat them
    errors += _check_values(config)
    errors += _check_layers(config.get("LAYERS") or [])
    try:
        from .middleware import http_settings

        http_settings()
    except ImproperlyConfigured as exc:
        errors.append(_error(str(exc), "cachekit.E006"))
    if not errors:
        errors += _check_engines(config)
    return errors


def _check_values(config: Mapping[str, Any]) -> list[checks.CheckMessage]:
    errors = []
    namespace = config.get("NAMESPACE", "cachekit")
    if not conf.NAMESPACE_RE.fullmatch(namespace):
        errors.append(
            _error(
                f'CACHEKIT["NAMESPACE"] = {namespace!r} is not a valid namespace.',
                "cachekit.E004",
                "Use 1-64 characters of A-Z a-z 0-9 _ . - (it prefixes every Redis key).",
            )
        )
    if not 0 <= config.get("JITTER", 0) < 1:
        errors.append(_error('CACHEKIT["JITTER"] must be in [0, 1).', "cachekit.E003"))
    ttl = config.get("DEFAULT_TTL")
    if ttl is not None and ttl <= 0:
        errors.append(_error('CACHEKIT["DEFAULT_TTL"] must be positive.', "cachekit.E003"))
    if config.get("SERIALIZER", "msgpack") not in SERIALIZERS:
        errors.append(
            _error(
                f'CACHEKIT["SERIALIZER"] must be one of {", ".join(SERIALIZERS)}.',
                "cachekit.E003",
            )
        )
    return errors


def _check_layers(layers: Any) -> list[checks.CheckMessage]:
    errors = []
    for i, layer in enumerate(layers):
        where = f'CACHEKIT["LAYERS"][{i}]'
        backend = layer.get("BACKEND") if isinstance(layer, Mapping) else None
        if backend not in conf.LAYER_KEYS:
            errors.append(
                _error(
                    f"{where} has an unknown backend {backend!r}.",
                    "cachekit.E005",
                    'Use {"BACKEND": "memory", ...} or {"BACKEND": "redis", "URL": ...}.',
                )
            )
            continue
        unknown = set(layer) - conf.LAYER_KEYS[backend]
        if unknown:
            errors.append(
                _error(
                    f"{where} ({backend}) has unknown keys {sorted(unknown)}.",
                    "cachekit.E005",
                    f"Valid keys: {', '.join(sorted(conf.LAYER_KEYS[backend]))}.",
                )
            )
        if backend == "redis" and not isinstance(layer.get("URL"), str):
            errors.append(_error(f'{where} (redis) needs a "URL" string.', "cachekit.E005"))
    if not errors and layers:
        try:
            conf.deprecated_layers(layers)  # the order: L1 in front of L2
        except ImproperlyConfigured as exc:
            errors.append(_error(str(exc), "cachekit.E005"))
    return errors


def _cachekit_aliases() -> list[str]:
    return [alias for alias in getattr(settings, "CACHES", {}) if conf.is_cachekit_alias(alias)]


def _check_engines(config: Mapping[str, Any]) -> list[checks.CheckMessage]:
    """E007-E009: ``CACHEKIT["CACHE"]`` and every engine the settings describe can be built."""
    if "CACHE" in config:
        alias = config["CACHE"]
        deprecated = [key for key in conf.DEPRECATED_KEYS if key in config]
        if deprecated:
            return [
                _error(
                    f'CACHEKIT["CACHE"] = {alias!r} comes with the deprecated engine keys '
                    f"{', '.join(deprecated)}: two answers to which engine cachekit uses.",
                    "cachekit.E009",
                    f"Configure CACHES[{alias!r}] instead (NAMESPACE, JITTER, SERIALIZER and "
                    "SECRET_KEY go in its OPTIONS, DEFAULT_TTL is its TIMEOUT) and remove them.",
                )
            ]
        found = conf.is_cachekit_alias(alias)
        if not found:
            what = "is not defined" if found is None else "does not use CachekitCache"
            return [
                _error(
                    f'CACHEKIT["CACHE"] = {alias!r}, but CACHES[{alias!r}] {what}.',
                    "cachekit.E008",
                    f'Name a CACHES alias whose BACKEND is "{conf.BACKEND}": pages, '
                    "fragments, invalidation and sessions run on its engine.",
                )
            ]
    errors = []
    built: list[tuple[str, str, conf.EngineSpec]] = []
    for alias in _cachekit_aliases():
        try:
            built.append((f"CACHES[{alias!r}]", "settings.CACHES", conf.alias_spec(alias)))
        except ImproperlyConfigured as exc:
            errors.append(_cannot_build(f"CACHES[{alias!r}]", exc, "settings.CACHES"))
    if any(key in config for key in conf.DEPRECATED_KEYS):
        try:
            built.append(("CACHEKIT", "settings.CACHEKIT", conf.spec_from_cachekit(config)))
        except ImproperlyConfigured as exc:
            errors.append(_cannot_build("CACHEKIT", exc, "settings.CACHEKIT"))
    for where, obj, spec in built:
        try:
            spec.build().close()  # no I/O: constructors only validate
        except (ImproperlyConfigured, CacheError, ValueError, TypeError) as exc:
            errors.append(_cannot_build(where, exc, obj))
    return errors


def _cannot_build(where: str, exc: Exception, obj: str) -> checks.CheckMessage:
    return _error(f"{where} cannot build a cachekit engine: {exc}", "cachekit.E007", obj=obj)


# --------------------------------------------------------------------------- one engine


def _store_of(alias: str) -> str | None:
    """A description of ``CACHES[alias]`` for messages; None when it is not defined."""
    entry = getattr(settings, "CACHES", {}).get(alias)
    if entry is None:
        return None
    if conf.is_cachekit_alias(alias):
        try:
            return conf.alias_spec(alias).describe()
        except ImproperlyConfigured:
            pass  # E007
    location = entry.get("LOCATION")
    return f"{entry.get('BACKEND')}" + (f" at {location!r}" if location else "")


def _process_local(alias: str) -> bool:
    """Whether ``CACHES[alias]`` keeps its entries in each process's memory."""
    entry = getattr(settings, "CACHES", {}).get(alias) or {}
    if conf.is_cachekit_alias(alias):
        try:
            return conf.alias_spec(alias).redis_url is None
        except ImproperlyConfigured:
            return False  # E007
    return bool(entry.get("BACKEND") == LOCMEM)


def _sessions_on_cachekit() -> bool:
    return getattr(settings, "SESSION_ENGINE", None) == SESSION_ENGINE


def check_engines(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W003: parts of cachekit that would silently use different stores."""
    try:
        source = conf.source()
    except ImproperlyConfigured:
        return []  # E007-E009 say why
    warnings: list[checks.CheckMessage] = []
    if source.alias is None:
        config = getattr(settings, "CACHEKIT", None) or {}
        cause = (
            "the deprecated CACHEKIT engine keys"
            if any(key in config for key in conf.DEPRECATED_KEYS)
            else 'a fallback, as CACHES["default"] is not a CachekitCache'
        )
        default = _store_of(DEFAULT_CACHE_ALIAS) or "undefined"
        warnings.append(
            checks.Warning(
                f"cachekit's {ENGINE_USERS} use an engine of their own ("
                f"{source.spec.describe()}, from {cause}), not the engine of "
                f'CACHES["default"] ({default}), which Django\'s cache API and sessions use.',
                hint=source.deprecation,
                obj="settings.CACHEKIT",
                id="cachekit.W003",
            )
        )
    elif _sessions_on_cachekit():
        alias = conf.session_alias()
        if alias != source.alias and source.spec.redis_url is not None and _process_local(alias):
            warnings.append(
                checks.Warning(
                    f"Sessions are kept in each process's memory (SESSION_CACHE_ALIAS = "
                    f"{alias!r}: {_store_of(alias)}) while {ENGINE_USERS} are in Redis "
                    f"(CACHES[{source.alias!r}]): a user is logged out whenever a request "
                    "lands on another process.",
                    hint=f"Remove SESSION_CACHE_ALIAS (sessions then use CACHES"
                    f"[{source.alias!r}]), or point CACHES[{alias!r}] at Redis.",
                    obj="settings.SESSION_CACHE_ALIAS",
                    id="cachekit.W003",
                )
            )
    warnings += _split_memory_stores()
    return warnings


def _split_memory_stores() -> list[checks.CheckMessage]:
    # LocMemCache shares a store by LOCATION; cachekit by everything that builds its engine.
    groups: dict[tuple[str, str], dict[conf.EngineSpec, list[str]]] = {}
    for alias in _cachekit_aliases():
        try:
            spec = conf.alias_spec(alias)
        except ImproperlyConfigured:
            continue  # E007
        if spec.redis_url is None:
            groups.setdefault((spec.memory_name, spec.namespace), {}).setdefault(spec, []).append(
                alias
            )
    warnings: list[checks.CheckMessage] = []
    for (location, namespace), specs in groups.items():
        if len(specs) > 1:
            aliases = ", ".join(repr(a) for same in specs.values() for a in same)
            warnings.append(
                checks.Warning(
                    f"CACHES aliases {aliases} name one in-process store (LOCATION "
                    f"{location!r}, namespace {namespace!r}) but differ in TIMEOUT or OPTIONS, "
                    "so each has a store of its own and none sees the others' entries.",
                    hint="Give them the same TIMEOUT and OPTIONS, or different LOCATIONs.",
                    obj="settings.CACHES",
                    id="cachekit.W003",
                )
            )
    return warnings


# --------------------------------------------------------------------------- Redis


def redis_targets() -> dict[str, list[str]]:
    """Every Redis URL cachekit uses, with what uses it: the pages' engine first (whatever
    settings it comes from), then each ``CachekitCache`` alias."""
    targets: dict[str, list[str]] = {}
    try:
        source: conf.Source | None = conf.source()
    except ImproperlyConfigured:
        source = None  # E007-E009
    if source is not None and source.spec.redis_url is not None:
        where = f"CACHES[{source.alias!r}]" if source.alias else "CACHEKIT"
        targets[source.spec.redis_url] = [f"{ENGINE_USERS} ({where})"]
    sessions = conf.session_alias() if _sessions_on_cachekit() else None
    for alias in _cachekit_aliases():
        try:
            url = conf.alias_spec(alias).redis_url
        except ImproperlyConfigured:
            continue  # E007
        if url is None:
            continue
        users = targets.setdefault(url, [])
        if source is None or alias != source.alias:
            users.append(f"sessions (CACHES[{alias!r}])" if alias == sessions else repr(alias))
        elif alias == sessions:
            users.append("sessions")
    return targets


def redis_urls() -> list[str]:
    """Every Redis URL cachekit uses, the pages' engine's first."""
    return list(redis_targets())


def safe_url(url: str) -> str:
    return redact_url(url)  # never print a password


def ping(url: str, timeout: float = 0.5) -> str | None:
    """None if the Redis at ``url`` answers PING within ``timeout``, else why not."""
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install 'cachekit-web[redis]')"
    client = None
    try:
        client = redis_client(url, timeout)
        client.ping()
    except Exception as exc:  # any failure is "unreachable", reported, never raised
        return f"{type(exc).__name__}: {exc}"
    finally:
        if client is not None:
            client.close()
    return None


def redis_client(url: str, timeout: float) -> Any:
    """A short-timeout client for ``url``: a single server, a cluster or a Sentinel master."""
    return Topology.parse(url).sync_client(
        {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    )


def check_redis(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W001: every Redis cachekit uses answers PING, the pages' engine's first."""
    warnings: list[checks.CheckMessage] = []
    for url, users in redis_targets().items():
        problem = ping(url)
        if problem is not None:
            warnings.append(
                checks.Warning(
                    f"Redis at {safe_url(url)} ({', '.join(users)}) is unreachable: {problem}.",
                    hint="cachekit falls back to its other layers, but pages and sessions are "
                    "not shared between processes until Redis is back.",
                    obj="settings.CACHES",
                    id="cachekit.W001",
                )
            )
    return warnings


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W002: ``CacheMiddleware`` above the middleware that add cookies or ``Vary``."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE not in middleware:
        return []
    ours = middleware.index(MIDDLEWARE)
    above = [m for m in middleware[:ours] if m in MUST_BE_BELOW]
    if not above:
        return []
    return [
        checks.Warning(
            f"{MIDDLEWARE} is listed after {', '.join(above)}.",
            hint="Their Set-Cookie and Vary headers are added after cachekit stored the page; "
            "move CacheMiddleware above them (near the top of MIDDLEWARE).",
            obj="settings.MIDDLEWARE",
            id="cachekit.W002",
        )
    ]


def register() -> None:
    """Register the checks (``CachekitDjangoConfig.ready()``)."""
    checks.register(check_settings, "cachekit")
    checks.register(check_engines, "cachekit")
    checks.register(check_middleware, "cachekit")
    # Not tagged "database" (those run only on request): an outage should show at start-up.
    checks.register(check_redis, "cachekit")
