"""Django settings for cachekit_django's tests. Import needs no Redis: tests that want one get a
URL from the ``redis_url`` fixture and apply it with ``override_settings``.

``CACHEKIT_DJANGO_EXTRA_APPS`` (comma-separated) adds apps; the runner of Django's own suites
uses it for the test apps it extracts from Django's sources (``cache``, ``sessions_tests``).
"""

from __future__ import annotations

import os

SECRET_KEY = "cachekit-tests-not-a-secret"
DEBUG = False
USE_TZ = True
USE_I18N = True
LANGUAGE_CODE = "en"
ALLOWED_HOSTS = ["*"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "cachekit_django",
    "tests.django_tests.shopapp",  # models, URLs and views of the HTTP/invalidation tests
    *filter(None, os.environ.get("CACHEKIT_DJANGO_EXTRA_APPS", "").split(",")),
]
if os.environ.get("CACHEKIT_DJANGO_TESTS_DIR"):
    # Django's own suites assume its tests/test_sqlite.py settings, where USE_TZ is off (with it
    # on, their page-cache key tests find the time zone name in the keys).
    USE_TZ = False
# Django's own test apps ship no migrations; neither do these for the test database.
MIGRATION_MODULES = {"auth": None, "contenttypes": None, "sessions": None}

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

CACHES = {"default": {"BACKEND": "cachekit_django.cache.CachekitCache"}}  # in-process only
SESSION_ENGINE = "cachekit_django.sessions"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

# --- shopapp (HTTP, invalidation, template tag and command tests) -------------------------
if not os.environ.get("CACHEKIT_DJANGO_TESTS_DIR"):  # not for Django's own suites
    from tests.django_tests.shopapp.postgres import postgres_databases

    ROOT_URLCONF = "tests.django_tests.shopapp.urls"
    DATABASES.update(postgres_databases())  # "postgres", when 127.0.0.1:5432 answers
