"""Settings of the benchmark's Django project, chosen by ``BENCH_CONTENDER``.

- ``plain``: no cache at all.
- ``cachekit_l1``: ``cachekit_django.middleware.CacheMiddleware`` at the top of ``MIDDLEWARE``
  and ``@cache_view(ttl=60)``; ``CACHEKIT`` names one in-process memory layer.
- ``cachekit_redis``: the same with ``CACHEKIT`` naming one Redis layer only (no L1), so
  every hit reads Redis.
- ``cache_page_locmem`` / ``cache_page_redis``: Django's ``@cache_page(60)`` on the view, with
  ``CACHES["default"]`` a ``LocMemCache`` / django-redis ``RedisCache``.

Every contender has the same two stock middlewares (``SecurityMiddleware``,
``CommonMiddleware``), no sessions, no auth and no database: the view's work is
``apps.work.product_payload``.
"""

from __future__ import annotations

import os

CONTENDER = os.environ.get("BENCH_CONTENDER", "plain")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "")
CONTENDERS = ("plain", "cachekit_l1", "cachekit_redis", "cache_page_locmem", "cache_page_redis")
if CONTENDER not in CONTENDERS:
    raise SystemExit(f"unknown BENCH_CONTENDER {CONTENDER!r}; one of {CONTENDERS}")

DEBUG = False
SECRET_KEY = "bench-only-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "apps.django_app.urls"
USE_TZ = True
DATABASES: dict[str, object] = {}
LOGGING_CONFIG = None  # no logging setup cost; errors still reach stderr via the server
INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
# MAX_ENTRIES: LocMemCache's default (300) cannot hold the benchmark's 1,000 pages (cache_page
# stores two entries per page); 10,000 matches cachekit's memory layer.
CACHES: dict[str, dict[str, object]] = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "OPTIONS": {"MAX_ENTRIES": 10_000},
    }
}

if CONTENDER.startswith("cachekit"):
    INSTALLED_APPS.append("cachekit_django")
    MIDDLEWARE.insert(0, "cachekit_django.middleware.CacheMiddleware")
    if CONTENDER == "cachekit_l1":
        layers: list[dict[str, object]] = [{"BACKEND": "memory", "MAXSIZE": 10_000, "TTL": 60}]
    else:
        layers = [{"BACKEND": "redis", "URL": REDIS_URL}]
    CACHEKIT = {"LAYERS": layers, "NAMESPACE": "bench-dj"}
elif CONTENDER == "cache_page_redis":
    CACHES["default"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "bench-djr",
    }
