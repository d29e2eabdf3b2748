"""Settings of the example shop: SQLite and an in-process cache by default, Redis when
``REDIS_URL`` is set. ``SHOP_DB`` moves the SQLite file (the tests put it in a tmp dir)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-shop-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ROOT_URLCONF = "shopsite.urls"
WSGI_APPLICATION = "shopsite.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "cachekit_django",  # template tags, `manage.py cachekit`, system checks, invalidation
    "shop",
]
MIDDLEWARE = [
    "cachekit_django.middleware.CacheMiddleware",  # first: a HIT is served before anything runs
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", BASE_DIR.parent / ".data" / "django_shop.sqlite3"),
    }
}

# --- cachekit ---------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL")  # e.g. redis://127.0.0.1:6379/0
# How long L1 trusts a copy of a Redis entry (tests/faults shortens it so Redis sees traffic).
L1_TTL = float(os.environ.get("SHOP_L1_TTL", "30"))

# One cache: Django's cache API, cache_view pages, {% cachefragment %}, model invalidation,
# `manage.py cachekit`, /cachekit/ and the sessions below all use the engine of this alias
# (CACHEKIT["CACHE"] would name another). In-process without a LOCATION; with REDIS_URL, an
# in-process L1 in front of Redis, shared by every process.
CACHES = {
    "default": {
        "BACKEND": "cachekit_django.cache.CachekitCache",
        "LOCATION": REDIS_URL or "",
        "TIMEOUT": 300,  # also the TTL of pages and fragments that name none
        "OPTIONS": {"NAMESPACE": "django_shop", "L1_TTL": L1_TTL},
    }
}
# The cart lives in the session, the session in the cache (no session table reads).
SESSION_ENGINE = "cachekit_django.sessions"
