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

# The engine behind cache_view, {% cachefragment %} and `manage.py cachekit`.
CACHEKIT = {
    "LAYERS": [
        {"BACKEND": "memory", "MAXSIZE": 10_000, "TTL": L1_TTL},
        *([{"BACKEND": "redis", "URL": REDIS_URL}] if REDIS_URL else []),
    ],
    "NAMESPACE": "django_shop",
    "DEFAULT_TTL": 300,
}
# Django's cache API (and the sessions below) on cachekit; in-process without a LOCATION.
CACHES = {
    "default": {
        "BACKEND": "cachekit_django.cache.CachekitCache",
        **({"LOCATION": REDIS_URL} if REDIS_URL else {}),
        "OPTIONS": {"NAMESPACE": "django_shop_cache"},
    }
}
# The cart lives in the session, the session in the cache (no session table reads).
SESSION_ENGINE = "cachekit_django.sessions"
