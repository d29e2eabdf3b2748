"""The FastAPI example shop. What to copy: ``CacheKit`` + ``kit.cache`` with tags, ``watch``
on the session factory (the edit endpoint contains no invalidation code), ``cache.cached`` for
a query, and the cart in ``SessionMiddleware``.

Run: ``uvicorn fastapi_shop.main:app --app-dir example_projects`` (``make demo`` does).
SQLite and an in-process cache by default; Redis when ``REDIS_URL`` is set.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal, InvalidOperation
from html import escape
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from shop_common.catalog import PER_PAGE, clamp_quantity
from shop_common.dashboard import History, dashboard_html
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cachekit_core import Cache
from cachekit_fastapi import CacheKit, SessionMiddleware
from cachekit_fastapi.sqlalchemy import tag_for, watch

from .models import Category, Product, SessionLocal, create_and_seed

REDIS_URL = os.environ.get("REDIS_URL")  # e.g. redis://127.0.0.1:6379/0
SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "example-shop-not-a-secret")
SEED_PRODUCTS = int(os.environ.get("SHOP_PRODUCTS", "3000"))
# How long L1 trusts a copy of a Redis entry (tests/faults shortens it so Redis sees traffic).
L1_TTL = float(os.environ.get("SHOP_L1_TTL", "30"))

# --- cachekit wiring ----------------------------------------------------------------------
if REDIS_URL:
    cache = Cache.from_url(
        REDIS_URL, namespace="fastapi_shop", secret_key=SECRET_KEY, l1_ttl=L1_TTL
    )
else:
    cache = Cache(namespace="fastapi_shop")  # in-process only
watch(SessionLocal, cache)  # a commit invalidates "products" and "products:<id>"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await run_in_threadpool(create_and_seed, SEED_PRODUCTS)
    history.start()
    yield


app = FastAPI(title="cachekit FastAPI shop", lifespan=lifespan)
kit = CacheKit(app, cache)  # the HTTP cache middleware; closes the cache after the lifespan
# Added after CacheKit, so outside it: the cache sees whether a response used the session.
app.add_middleware(SessionMiddleware, cache=cache, secret_key=SECRET_KEY)
history = History(cache.stats)

# max-age=0: browsers revalidate every time (a cheap 304 thanks to the ETag), so an edit shows
# at once; the server-side copy lives `ttl` seconds or until a commit invalidates it.
PAGE_CACHE_CONTROL = "public, max-age=0"


def get_db() -> Iterator[Session]:
    with SessionLocal() as db:
        yield db


DB = Annotated[Session, Depends(get_db)]


# --- pages ----------------------------------------------------------------------------------
@cache.cached(ttl=300, key="category-counts", tags=[tag_for(Product), tag_for(Category)])
def category_counts() -> list[list[Any]]:
    """The sidebar's query, cached in the engine: one loader call per invalidation."""
    with SessionLocal() as db:
        rows = db.execute(
            select(Category.slug, Category.name, func.count(Product.id))
            .outerjoin(Product, Product.category_id == Category.id)
            .group_by(Category.id)
            .order_by(Category.name)
        )
        return [list(row) for row in rows]


@app.get("/", response_class=HTMLResponse)
@kit.cache(ttl=60, tags=[tag_for(Product), tag_for(Category)], cache_control=PAGE_CACHE_CONTROL)
def product_list(
    db: DB,
    category: str = "",
    min_price: Annotated[str, Query(alias="min")] = "",
    max_price: Annotated[str, Query(alias="max")] = "",
    page: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    """Every page and filter combination is cached for 60 s (the query string is part of the
    key); a commit touching any product invalidates the "products" tag, so all of them."""
    query = select(Product).join(Product.category).order_by(Product.id)
    if category:
        query = query.where(Category.slug == category)
    low, high = _cents(min_price), _cents(max_price)
    if low is not None:
        query = query.where(Product.price_cents >= low)
    if high is not None:
        query = query.where(Product.price_cents <= high)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, -(-total // PER_PAGE))
    page = min(page, pages)
    rows = db.scalars(query.offset((page - 1) * PER_PAGE).limit(PER_PAGE)).all()
    filters = {"category": category, "min": min_price, "max": max_price}

    def link(number: int, label: str) -> str:
        return f'<a href="/?{escape(urlencode({**filters, "page": number}))}">{label}</a>'

    sidebar = "".join(
        f'<li><a href="/?category={escape(slug)}">{escape(name)}</a> '
        f'<span class="muted">({count})</span></li>'
        for slug, name, count in category_counts()
    )
    table = (
        "".join(
            f'<tr><td>{p.id}</td><td><a href="/products/{p.id}/">{escape(p.name)}</a></td>'
            f"<td>{escape(p.category.name)}</td><td>{p.price}</td></tr>"
            for p in rows
        )
        or '<tr><td colspan="4">No products match.</td></tr>'
    )
    body = f"""
<aside><h3>Categories</h3><ul><li><a href="/">All</a></li>{sidebar}</ul></aside>
<section>
  <form method="get"><input type="hidden" name="category" value="{escape(category)}">
    Price from <input name="min" value="{escape(min_price)}" size="6">
    to <input name="max" value="{escape(max_price)}" size="6"> <button>Filter</button></form>
  <table><tr><th>#</th><th>Product</th><th>Category</th><th>Price</th></tr>{table}</table>
  <p>{link(page - 1, "&lsaquo; previous") if page > 1 else ""}
    page {page} of {pages} ({total} products)
    {link(page + 1, "next &rsaquo;") if page < pages else ""}</p>
  <p class="muted">Cached for 60 s by <code>@kit.cache(tags=["products", "categories"])</code>:
    look at the <code>X-Cache</code> response header.</p>
</section>"""
    return HTMLResponse(layout("Products", body))


@app.get("/products/{pid}/", response_class=HTMLResponse)
@kit.cache(ttl=300, tags=lambda pid: [tag_for(Product, pid)], cache_control=PAGE_CACHE_CONTROL)
def product_detail(pid: int, db: DB) -> HTMLResponse:
    """Only this row's tag: committing product 7 re-renders /products/7/ and the list."""
    product = _product(db, pid)
    body = f"""
<section><h1>{escape(product.name)}</h1><p>{escape(product.description)}</p>
  <table>
    <tr><th>Category</th><td><a href="/?category={escape(product.category.slug)}">
      {escape(product.category.name)}</a></td></tr>
    <tr><th>Price</th><td>{product.price}</td></tr>
    <tr><th>In stock</th><td>{product.stock}</td></tr>
  </table>
  <form method="post" action="/cart/add/{pid}/">Quantity
    <input name="quantity" type="number" value="1" min="1" max="99">
    <button>Add to cart</button></form>
  <p><a href="/products/{pid}/edit/">Edit</a></p>
  <p class="muted">Cached for 300 s with the tag <code>products:{pid}</code>: a commit that
    changes this row re-renders this page and the list, and nothing else.</p>
</section>"""
    return HTMLResponse(layout(product.name, body))


@app.get("/products/{pid}/edit/", response_class=HTMLResponse)
def product_edit_form(pid: int, db: DB) -> HTMLResponse:
    product = _product(db, pid)
    values = {"name": product.name, "price": product.price, "stock": str(product.stock)}
    values["description"] = product.description
    return HTMLResponse(layout(f"Edit {product.name}", _edit_form(pid, values, {})))


@app.post("/products/{pid}/edit/", response_model=None)
async def product_edit(pid: int, request: Request) -> HTMLResponse | RedirectResponse:
    """Parses the urlencoded form itself (FastAPI's ``Form`` needs python-multipart)."""
    form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    errors = await run_in_threadpool(_save_product, pid, form)
    if errors:
        body = _edit_form(pid, form, errors)
        return HTMLResponse(layout("Edit product", body), status_code=400)
    return RedirectResponse(f"/products/{pid}/", status_code=303)


def _save_product(pid: int, form: dict[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    name = form.get("name", "").strip()
    if not name or len(name) > 120:
        errors["name"] = "1 to 120 characters"
    price = _cents(form.get("price", ""))
    if price is None or price < 0:
        errors["price"] = "a price like 12.50"
    stock = form.get("stock", "")
    if not stock.isdigit():
        errors["stock"] = "a whole number"
    if errors:
        return errors
    with SessionLocal() as db:
        product = _product(db, pid)
        product.name, product.price_cents, product.stock = name, price or 0, int(stock)
        product.description = form.get("description", "")
        db.commit()  # watch invalidates "products" and f"products:{pid}" here
    return {}


# --- cart -----------------------------------------------------------------------------------
@app.post("/cart/add/{pid}/")
async def cart_add(pid: int, request: Request) -> RedirectResponse:
    form = dict(parse_qsl((await request.body()).decode()))
    cart = dict(request.session.get("cart", {}))
    cart[str(pid)] = cart.get(str(pid), 0) + clamp_quantity(form.get("quantity"))
    request.session["cart"] = cart  # stored in the cache; the cookie holds a signed id
    return RedirectResponse("/cart/", status_code=303)


@app.get("/cart/", response_class=HTMLResponse)
def cart(request: Request, db: DB) -> HTMLResponse:
    """Never cached: it reads the session. Once a visitor has a session cookie, the shared
    pages answer ``X-Cache: BYPASS`` for them; ``kit.cache(per_user=True)`` with a ``user``
    function on ``CacheKit`` would key pages per user instead."""
    quantities = {int(pid): qty for pid, qty in request.session.get("cart", {}).items()}
    found = db.scalars(select(Product).where(Product.id.in_(quantities))).all()
    rows, total = [], 0
    for product in found:
        subtotal = product.price_cents * quantities[product.id]
        total += subtotal
        rows.append(
            f'<tr><td><a href="/products/{product.id}/">{escape(product.name)}</a></td>'
            f"<td>{quantities[product.id]}</td><td>{subtotal / 100:.2f}</td></tr>"
        )
    empty = '<tr><td colspan="3">Your cart is empty.</td></tr>'
    body = f"""
<section><h1>Your cart</h1>
  <table><tr><th>Product</th><th>Quantity</th><th>Subtotal</th></tr>{"".join(rows) or empty}
    <tr><th colspan="2">Total</th><th>{total / 100:.2f}</th></tr></table>
  <p class="muted">The cart lives in cachekit's <code>SessionMiddleware</code>. With a session
    cookie, shared pages answer <code>X-Cache: BYPASS</code> for you.</p>
</section>"""
    return HTMLResponse(layout("Cart", body))


# --- /cachekit/ -----------------------------------------------------------------------------
NO_STORE = {"Cache-Control": "no-store"}


@app.get("/cachekit/", response_class=HTMLResponse)
def dashboard() -> HTMLResponse:
    head = '<meta http-equiv="refresh" content="5">'
    body = f"<section>{dashboard_html(history)}</section>"
    return HTMLResponse(layout("cachekit", body, head=head), headers=NO_STORE)


@app.get("/cachekit/stats.json")
def dashboard_json() -> JSONResponse:
    return JSONResponse(history.as_json(), headers=NO_STORE)


# --- helpers --------------------------------------------------------------------------------
def _product(db: Session, pid: int) -> Product:
    product = db.get(Product, pid)
    if product is None:
        raise HTTPException(404, "No such product")
    return product


def _cents(value: str) -> int | None:
    try:
        number = Decimal(value) if value else None
    except InvalidOperation:
        return None
    return int(number * 100) if number is not None and number.is_finite() else None


def _edit_form(pid: int, values: dict[str, str], errors: dict[str, str]) -> str:
    def field(name: str, label: str) -> str:
        error = f' <b class="error">{escape(errors[name])}</b>' if name in errors else ""
        value = escape(values.get(name, ""))
        return f'<tr><th>{label}</th><td><input name="{name}" value="{value}">{error}</td></tr>'

    description = escape(values.get("description", ""))
    return f"""
<section><h1>Edit product {pid}</h1>
  <form method="post"><table>{field("name", "Name")}{field("price", "Price")}
    {field("stock", "Stock")}<tr><th>Description</th>
    <td><textarea name="description">{description}</textarea></td></tr></table>
    <button>Save</button></form></section>"""


STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 0; color: #222; }
header { background: #05998b; color: #fff; padding: .6em 1.2em; }
header a { color: #fff; margin-right: 1.2em; text-decoration: none; }
main { display: flex; gap: 2em; padding: 1em 1.2em; }
aside { min-width: 12em; } aside ul { list-style: none; padding: 0; }
table { border-collapse: collapse; }
td, th { padding: .2em .6em; border-bottom: 1px solid #eee; text-align: left; }
.muted { color: #777; font-size: 90%; } .error { color: #b00; }
"""


def layout(title: str, body: str, head: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(title)} · FastAPI shop · cachekit example</title>{head}<style>{STYLE}</style>
</head><body>
<header><b>FastAPI shop</b> · <a href="/">Products</a><a href="/cart/">Cart</a>
<a href="/cachekit/">/cachekit/</a></header>
<main>{body}</main></body></html>"""
