"""Views for the tests. ``echo`` renders a page whose status, headers, cookies and session use
come from its query string, and whose body counts renders (``n=``): a test tells a cached page
from a re-rendered one by that number."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View

from cachekit_django import CacheViewMixin, cache_view, tag_for

from .models import Category, FeaturedProduct, Product

RENDERS = itertools.count(1)
STREAMED: list[str] = []  # chunks the streaming view produced, in order


def _echo(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    q = request.GET
    parts = [f"n={next(RENDERS)}"]
    parts += [f"{name}={request.headers.get(name, '-')}" for name in q.getlist("show")]
    if "host" in q:
        parts.append(f"host={request.get_host()}")
    if "user" in q:
        parts.append(f"user={request.user.get_username() or '-'}")
    session = q.get("session")
    if session == "read":
        parts.append(f"cart={request.session.get('cart')}")
    elif session == "in":
        parts.append(f"cart={'cart' in request.session}")
    elif session == "write":
        request.session["cart"] = parts[0]
    body = ";".join(parts) + "x" * int(q.get("pad", 0))
    status = int(request.headers.get("X-Echo-Status") or q.get("status", 200))
    response = HttpResponse(body, status=status, content_type="text/plain")
    for header in q.getlist("h"):
        name, _, value = header.partition(":")
        response.headers[name.strip()] = value.strip()
    for cookie in q.getlist("cookie"):
        name, _, value = cookie.partition("=")
        response.set_cookie(name, value)
    return response


def static(request: HttpRequest) -> HttpResponse:
    """Not decorated, the same body for the same URL: validators and 304s without storage.
    ``h`` and ``pad`` work as for ``echo``."""
    response = HttpResponse(
        "static page" + "x" * int(request.GET.get("pad", 0)), content_type="text/plain"
    )
    for header in request.GET.getlist("h"):
        name, _, value = header.partition(":")
        response.headers[name.strip()] = value.strip()
    return response


echo = cache_view(ttl=60, tags=["echo"])(_echo)
long = cache_view(ttl=600)(_echo)  # longer than an L1's 30 s TTL
plain = _echo  # not decorated: validators only (or shared-cache mode)
me = cache_view(ttl=60, per_user=True)(_echo)
stale = cache_view(ttl=10, stale_ttl=60)(_echo)
declared = cache_view(cache_control="public, max-age=60, s-maxage=300")(_echo)
account = cache_view(ttl=60, cache_control="private, max-age=60")(_echo)
# Only q and page are part of the key (issue 11, item 9): other parameters share the page.
listing = cache_view(ttl=60, query_params=["q", "page"])(_echo)


@cache_view(ttl=60)
def stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Any:
        for chunk in ("a", "b", "c"):
            STREAMED.append(chunk)
            yield chunk.encode()

    return StreamingHttpResponse(chunks(), content_type="text/plain")


@cache_view(ttl=60)
def file_view(request: HttpRequest) -> FileResponse:
    return FileResponse(Path(__file__).open("rb"))


def _db(request: HttpRequest) -> str:
    return request.GET.get("db", "default")


@cache_view(ttl=60, models=[Product])
def product_list(request: HttpRequest) -> HttpResponse:
    rows = Product.objects.using(_db(request)).order_by("pk")
    return HttpResponse(",".join(f"{p.name}:{p.price}" for p in rows) + f";n={next(RENDERS)}")


@cache_view(ttl=60, models=[FeaturedProduct])
def featured_list(request: HttpRequest) -> HttpResponse:
    rows = FeaturedProduct.objects.using(_db(request)).order_by("pk")
    return HttpResponse(",".join(p.name for p in rows))


@cache_view(ttl=60, tags=lambda request, pk: [tag_for(Product, pk)])
def product_detail(request: HttpRequest, pk: int) -> HttpResponse:
    product = Product.objects.using(_db(request)).filter(pk=pk).first()
    if product is None:
        raise Http404
    names = ",".join(c.name for c in product.categories.order_by("pk"))
    return HttpResponse(f"{product.name}:{product.price}[{names}]")


@cache_view(ttl=60, tags=["shopapp.category:{pk}"])
def category_detail(request: HttpRequest, pk: int) -> HttpResponse:
    category = Category.objects.using(_db(request)).get(pk=pk)
    names = ",".join(p.name for p in category.products.order_by("pk"))
    return HttpResponse(f"{category.name}[{names}]")


def fragment(request: HttpRequest) -> HttpResponse:
    products = Product.objects.order_by("pk")  # lazy: queried only when the fragment renders
    return render(request, "shopapp/fragment.html", {"products": products, "n": next(RENDERS)})


class MixinView(CacheViewMixin, View):
    cache_ttl = 60
    cache_models = [Product]
    cache_tags = staticmethod(lambda request, *args, **kwargs: ["mixin"])

    def get(self, request: HttpRequest) -> HttpResponseBase:
        return _echo(request)


@method_decorator(cache_view(ttl=60, tags=["decorated"]), name="dispatch")
class DecoratedView(View):
    def get(self, request: HttpRequest) -> HttpResponseBase:
        return _echo(request)

    def post(self, request: HttpRequest) -> HttpResponseBase:
        return HttpResponse("posted")


@cache_view(ttl=60, tags=["async"])
async def async_echo(request: HttpRequest) -> HttpResponseBase:
    return _echo(request)


@cache_view(ttl=60, per_user=True)
async def async_me(request: HttpRequest) -> HttpResponseBase:
    user = await request.auser()
    return HttpResponse(f"user={user.get_username() or '-'};n={next(RENDERS)}")


@method_decorator(cache_view(ttl=60, tags=["async-cbv"]), name="dispatch")
class AsyncDecoratedView(View):
    async def get(self, request: HttpRequest) -> HttpResponseBase:
        return _echo(request)


class AsyncMixinView(CacheViewMixin, View):
    cache_ttl = 60
    cache_tags = ["async-mixin"]

    async def get(self, request: HttpRequest) -> HttpResponseBase:
        return _echo(request)
