"""URLs and views of ``test_page_scope.py`` (issue 10: language and time zone in the key,
pass-through of views that are not cached, cache_view on its own, pages with forms)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotModified,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template import RequestContext, Template
from django.urls import path
from django.utils import timezone, translation

from cachekit_django import cache_view

RENDERS = itertools.count(1)
FORM = Template(
    '<form method="post">{% csrf_token %}<input name="q"></form>'
    '<script>const token = "{{ csrf_token }}";</script>n={{ n }}'
)


def _lang(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        f"lang={translation.get_language()};tz={timezone.get_current_timezone_name()};"
        f"n={next(RENDERS)}",
        content_type="text/plain",
    )


def _form(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return HttpResponse(f"posted {request.POST.get('q')}")
    return HttpResponse(FORM.render(RequestContext(request, {"n": next(RENDERS)})))


def _redirect(request: HttpRequest) -> HttpResponseRedirect:
    return HttpResponseRedirect("/pages/plain/")


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"plain n={next(RENDERS)}", content_type="text/plain")


def json(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"n": next(RENDERS)})


@cache_view(ttl=60)
def no_store(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"secret n={next(RENDERS)}")
    response.headers["Cache-Control"] = "no-store"
    return response


@cache_view(ttl=60, cache_control="public, max-age=60")
def validated(request: HttpRequest) -> HttpResponseBase:
    """Answers its own 304 (as ``django.views.decorators.http.condition`` would)."""
    if request.headers.get("If-None-Match") == '"v1"':
        return HttpResponseNotModified(headers={"ETag": '"v1"'})
    return HttpResponse("validated", headers={"ETag": '"v1"'})


class TimeZoneMiddleware:
    """A project's own time zone middleware: the ``tz`` cookie's zone for this request."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        zone = request.COOKIES.get("tz")
        if zone:
            timezone.activate(zone)
        else:
            timezone.deactivate()
        return self.get_response(request)


lang = cache_view(ttl=60)(_lang)
form = cache_view(ttl=60)(_form)
form_no_csrf = cache_view(ttl=60, csrf=False)(_form)
redirect = cache_view(ttl=60)(_redirect)

urlpatterns = [
    path("pages/plain/", plain),
    path("pages/json/", json),
    path("pages/lang/", lang),
    path("pages/form/", form),
    path("pages/form-no-csrf/", form_no_csrf),
    path("pages/redirect/", redirect),
    path("pages/plain-redirect/", _redirect),
    path("pages/no-store/", no_store),
    path("pages/validated/", validated),
]
