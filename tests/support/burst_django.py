"""A Django project in one module for the burst tests: settings (when run as a server:
``DJANGO_SETTINGS_MODULE=tests.support.burst_django``), URLs, views and the ASGI
``application``. Renders are counted as in ``burst_apps`` (``BURST_COUNTER_URL`` or
``burst_apps.RENDERS``); the cache is ``BURST_REDIS_URL``'s Redis, or in process."""

from __future__ import annotations

import os
import time

from django.http import HttpRequest, HttpResponse
from django.urls import path

from cachekit_django import cache_view
from tests.support.burst_apps import RENDER_SECONDS, TTLS, count

# -- settings (used when this module is DJANGO_SETTINGS_MODULE) ------------------------------
SECRET_KEY = "burst-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["cachekit_django"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
MIDDLEWARE = ["cachekit_django.middleware.CacheMiddleware"]
ROOT_URLCONF = "tests.support.burst_django"
_LOCATION = {"LOCATION": os.environ["BURST_REDIS_URL"]} if os.environ.get("BURST_REDIS_URL") else {}
CACHES = {
    "default": {
        "BACKEND": "cachekit_django.cache.CachekitCache",
        **_LOCATION,
        "OPTIONS": {"NAMESPACE": "burst"},
    }
}


# -- views -----------------------------------------------------------------------------------
def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", headers={"X-Pid": str(os.getpid())})


@cache_view(TTLS["page"])
def page(request: HttpRequest) -> HttpResponse:
    time.sleep(RENDER_SECONDS)
    count("page")
    return HttpResponse(f"page {time.time()}", content_type="text/plain")


@cache_view(TTLS["expiring"])
def expiring(request: HttpRequest) -> HttpResponse:
    time.sleep(RENDER_SECONDS)
    count("expiring")
    return HttpResponse(f"expiring {time.time()}", content_type="text/plain")


@cache_view(TTLS["cookie"])
def cookie(request: HttpRequest) -> HttpResponse:
    time.sleep(RENDER_SECONDS)
    count("cookie")
    response = HttpResponse("with a cookie", content_type="text/plain")
    response.set_cookie("visitor", "1")
    return response


urlpatterns = [
    path("health", health),
    path("page", page),
    path("expiring", expiring),
    path("cookie", cookie),
]


def __getattr__(name: str) -> object:
    # ``uvicorn tests.support.burst_django:application``, built in the worker.
    if name == "application":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.burst_django")
        from django.core.asgi import get_asgi_application

        built = globals()["application"] = get_asgi_application()
        return built
    raise AttributeError(name)
