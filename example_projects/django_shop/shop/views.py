"""The shop's views. What to copy: the two ``cache_view`` declarations, the edit view that
needs no invalidation code at all, and the cart, which lives in the session and is not cached.
"""

import threading
from decimal import Decimal, InvalidOperation

from django import forms
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from shop_common.catalog import PER_PAGE, clamp_quantity
from shop_common.dashboard import History, dashboard_html

from cachekit_django import cache_view, get_cache, tag_for

from .models import Category, Product

# max-age=0: browsers revalidate every time (a cheap 304 thanks to the ETag), so an edit shows
# at once; the server-side copy lives `ttl` seconds or until a save invalidates it.
PAGE_CACHE_CONTROL = "public, max-age=0"


def _decimal(value: str | None) -> Decimal | None:
    try:
        number = Decimal(value) if value else None
    except InvalidOperation:
        return None
    return number if number is not None and number.is_finite() else None


# Any save of a Product or Category (and QuerySet.update(), bulk_create, ...) re-renders every
# page of the list. The query string (filters, page) is part of the cache key.
@cache_view(ttl=60, models=[Product, Category], cache_control=PAGE_CACHE_CONTROL)
def product_list(request: HttpRequest) -> HttpResponse:
    products = Product.objects.select_related("category")
    category = request.GET.get("category") or ""
    min_price, max_price = _decimal(request.GET.get("min")), _decimal(request.GET.get("max"))
    if category:
        products = products.filter(category__slug=category)
    if min_price is not None:
        products = products.filter(price__gte=min_price)
    if max_price is not None:
        products = products.filter(price__lte=max_price)
    page = Paginator(products, PER_PAGE).get_page(request.GET.get("page"))
    filters = request.GET.copy()
    filters.pop("page", None)
    context = {
        "page": page,
        "filters": filters.urlencode(),
        "category": category,
        "min": request.GET.get("min", ""),
        "max": request.GET.get("max", ""),
        # Lazy: only evaluated when the {% cachefragment %} sidebar misses.
        "categories": Category.objects.annotate(count=Count("products")),
    }
    return render(request, "shop/product_list.html", context)


# Only this product's row tag: saving product 7 re-renders /products/7/ and the list, and
# leaves every other detail page cached. (QuerySet.update() invalidates the model tag alone, as
# it cannot know the rows: add tag_for(Product) here if detail pages must follow bulk writes.)
@cache_view(
    ttl=300, tags=lambda request, pk: [tag_for(Product, pk)], cache_control=PAGE_CACHE_CONTROL
)
def product_detail(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(Product.objects.select_related("category"), pk=pk)
    return render(request, "shop/product_detail.html", {"product": product})


class ProductForm(forms.ModelForm):
    class Meta:
        model = Product
        fields = ["name", "price", "stock", "description"]


def product_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Not cached (it carries a CSRF token). ``form.save()`` is all it takes: cachekit's
    signal handlers invalidate ``tag_for(Product)`` and ``tag_for(Product, pk)``."""
    product = get_object_or_404(Product, pk=pk)
    form = ProductForm(request.POST or None, instance=product)
    if request.method == "POST" and form.is_valid():
        form.save()
        return redirect("shop:detail", pk=pk)
    return render(request, "shop/product_edit.html", {"form": form, "product": product})


def _cart(request: HttpRequest) -> dict[str, int]:
    return dict(request.session.get("cart", {}))  # reading creates no session


def cart_add(request: HttpRequest, pk: int) -> HttpResponse:
    """The cached detail page links here rather than embedding the form: a CSRF token would
    make the detail page personal (``Vary: Cookie``) and so uncacheable."""
    product = get_object_or_404(Product, pk=pk)
    if request.method == "POST":
        quantity = clamp_quantity(request.POST.get("quantity"))
        cart = _cart(request)
        cart[str(pk)] = cart.get(str(pk), 0) + quantity
        request.session["cart"] = cart
        return redirect("shop:cart")
    return render(request, "shop/cart_add.html", {"product": product})


def cart(request: HttpRequest) -> HttpResponse:
    """Never cached: it reads the session. Once a visitor has a session cookie, the shared
    pages answer ``X-Cache: BYPASS`` for them (a page must not be served from one user's
    session to another); ``cache_view(per_user=True)`` would key pages per logged-in user."""
    quantities = {int(pk): qty for pk, qty in _cart(request).items()}
    products = Product.objects.in_bulk(list(quantities))
    lines = [
        (products[pk], qty, products[pk].price * qty)
        for pk, qty in quantities.items()
        if pk in products
    ]
    total = sum((line[2] for line in lines), Decimal(0))
    return render(request, "shop/cart.html", {"lines": lines, "total": total})


_history: History | None = None
_history_lock = threading.Lock()


def _stats_history() -> History:
    """One sampler per process, started by the first visit to /cachekit/."""
    global _history
    with _history_lock:
        if _history is None:
            _history = History(get_cache().stats).start()
        return _history


@never_cache
def dashboard(request: HttpRequest) -> HttpResponse:
    body = dashboard_html(_stats_history())  # escapes everything it interpolates
    return render(request, "shop/dashboard.html", {"body": mark_safe(body)})


@never_cache
def dashboard_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_stats_history().as_json())
