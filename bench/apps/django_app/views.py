"""``GET /p/<pid>``: the product page, wrapped according to ``BENCH_CONTENDER``."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from ..work import calls, product_payload


def _product(request: HttpRequest, pid: int) -> JsonResponse:
    return JsonResponse(product_payload(pid))


if settings.CONTENDER.startswith("cachekit"):
    from cachekit_django import cache_view

    product = cache_view(ttl=60)(_product)
elif settings.CONTENDER.startswith("cache_page"):
    from django.views.decorators.cache import cache_page

    product = cache_page(60)(_product)
else:
    product = _product


def view_calls(request: HttpRequest) -> JsonResponse:
    """How many times the product work ran (the harness checks cached contenders with it)."""
    return JsonResponse({"calls": calls()})
