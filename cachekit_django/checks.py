"""System checks (``manage.py check``, and at start-up of every management command).

=============== ==========================================================================
cachekit.E001   ``CACHEKIT`` is not a dict
cachekit.E002   ``CACHEKIT`` has an unknown key (a typo would otherwise be silently ignored)
cachekit.E003   a ``CACHEKIT`` value has the wrong type or range
cachekit.E004   ``CACHEKIT["NAMESPACE"]`` is not 1-64 of ``A-Z a-z 0-9 _ . -``
cachekit.E005   a ``CACHEKIT["LAYERS"]`` entry: unknown backend, unknown key or missing URL
cachekit.E006   ``CACHEKIT["HTTP"]`` is invalid
cachekit.E007   the engine cannot be built from ``CACHEKIT`` (e.g. a bad Redis URL scheme)
cachekit.W001   a configured Redis does not answer PING
cachekit.W002   ``CacheMiddleware`` sits below middleware whose cookies or ``Vary`` it must see
=============== ==========================================================================

An unreachable Redis is a warning, not an error: cachekit fails open (the site runs on the
remaining layers), and an error would stop ``migrate`` and ``runserver`` during an outage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from cachekit_core.layers._topology import Topology, redact_url

from . import conf

KNOWN_KEYS = {
    "LAYERS": (list, tuple),
    "NAMESPACE": (str,),
    "DEFAULT_TTL": (int, float, type(None)),
    "JITTER": (int, float),
    "SERIALIZER": (str,),
    "SECRET_KEY": (str, bytes),
    "HTTP": (dict,),
    "SESSIONS": (dict,),
}
SERIALIZERS = ("msgpack", "json", "pickle")
MIDDLEWARE = "cachekit_django.middleware.CacheMiddleware"
# Middleware whose response processing adds Set-Cookie or Vary: it must run before ours stores.
MUST_BE_BELOW = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.locale.LocaleMiddleware",
)


def _error(msg: str, id: str, hint: str | None = None) -> checks.CheckMessage:
    return checks.Error(msg, hint=hint, obj="settings.CACHEKIT", id=id)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001-E007: the ``CACHEKIT`` setting."""
    config = getattr(settings, "CACHEKIT", None)
    if config is None:
        return []
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
        try:
            conf.build_cache(config).close()  # no I/O: constructors only validate
        except (ImproperlyConfigured, ValueError, TypeError) as exc:
            errors.append(_error(f"CACHEKIT cannot build a cache: {exc}", "cachekit.E007"))
    return errors


def _check_values(config: Mapping[str, Any]) -> list[checks.CheckMessage]:
    errors = []
    namespace = config.get("NAMESPACE", "cachekit")
    if not conf._NAMESPACE.fullmatch(namespace):
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
        if backend not in conf._LAYER_KEYS:
            errors.append(
                _error(
                    f"{where} has an unknown backend {backend!r}.",
                    "cachekit.E005",
                    'Use {"BACKEND": "memory", ...} or {"BACKEND": "redis", "URL": ...}.',
                )
            )
            continue
        unknown = set(layer) - conf._LAYER_KEYS[backend]
        if unknown:
            errors.append(
                _error(
                    f"{where} ({backend}) has unknown keys {sorted(unknown)}.",
                    "cachekit.E005",
                    f"Valid keys: {', '.join(sorted(conf._LAYER_KEYS[backend]))}.",
                )
            )
        if backend == "redis" and not isinstance(layer.get("URL"), str):
            errors.append(_error(f'{where} (redis) needs a "URL" string.', "cachekit.E005"))
    return errors


def redis_urls() -> list[str]:
    """Every Redis URL the settings name: ``CACHEKIT`` layers and ``CachekitCache`` entries."""
    urls = []
    config = getattr(settings, "CACHEKIT", None)
    if isinstance(config, Mapping):
        for layer in config.get("LAYERS") or []:
            if isinstance(layer, Mapping) and layer.get("BACKEND") == "redis":
                urls.append(layer.get("URL"))
    for entry in getattr(settings, "CACHES", {}).values():
        if entry.get("BACKEND") == "cachekit_django.cache.CachekitCache":
            location = entry.get("LOCATION") or ""
            location = location if isinstance(location, str) else (location or [""])[0]
            urls.append(location)
    redis = (u for u in urls if isinstance(u, str) and u.startswith(conf.REDIS_SCHEMES))
    return list(dict.fromkeys(redis))


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
    """W001: every configured Redis answers PING."""
    warnings: list[checks.CheckMessage] = []
    for url in redis_urls():
        problem = ping(url)
        if problem is not None:
            warnings.append(
                checks.Warning(
                    f"Redis at {safe_url(url)} is unreachable: {problem}.",
                    hint="cachekit falls back to its other layers, but pages and sessions are "
                    "not shared between processes until Redis is back.",
                    obj="settings.CACHEKIT",
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
    """Register the checks (``CachekitConfig.ready()``)."""
    checks.register(check_settings, "cachekit")
    checks.register(check_middleware, "cachekit")
    # Not tagged "database" (those run only on request): an outage should show at start-up.
    checks.register(check_redis, "cachekit")
