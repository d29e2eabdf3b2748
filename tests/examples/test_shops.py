"""The example shops, end to end: real servers in subprocesses, SQLite in a tmp dir, a
200-product catalogue, once on the in-process cache and once on Redis (``REDIS_URL``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from ._servers import django_shop, fastapi_shop

Shop = Callable[[Path, str | None], AbstractContextManager[str]]
SHOPS = [pytest.param(django_shop, id="django"), pytest.param(fastapi_shop, id="fastapi")]


def _csrf(client: httpx.Client, form_page: str) -> dict[str, str]:
    """Django's CSRF token from a form page (the cookie stays in the client's jar)."""
    page = client.get(form_page)
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    return {"csrfmiddlewaretoken": match.group(1)} if match else {}


def _post_form(client: httpx.Client, url: str, data: dict[str, str]) -> httpx.Response:
    """POST a form as a browser would: the Django shop's forms carry a CSRF token, shown on
    the same URL (the FastAPI shop has none; GETting /cart/add/ there is a 405, no token)."""
    return client.post(url, data={**data, **_csrf(client, url)})


def _get(client: httpx.Client, url: str, **params: str) -> tuple[str, str]:
    response = client.get(url, params=params)
    assert response.status_code == 200, (url, response.status_code, response.text[:500])
    return response.headers["x-cache"], response.text


def _title(html: str) -> str:
    match = re.search(r"<h1>(.*?)</h1>", html, re.S)
    assert match
    return match.group(1).strip()


def exercise_shop(base: str, layers: set[str]) -> None:
    anon, editor, shopper = (httpx.Client(base_url=base, timeout=10) for _ in range(3))
    with anon, editor, shopper:
        # 1. The list (with filters and pagination) and detail pages: MISS, then HIT.
        for url, params in [
            ("/", {}),
            ("/", {"category": "books", "min": "10", "max": "300", "page": "1"}),
            ("/", {"page": "3"}),
            ("/products/5/", {}),
            ("/products/6/", {}),
        ]:
            state, first = _get(anon, url, **params)
            assert state == "MISS", (url, params)
            assert _get(anon, url, **params) == ("HIT", first)
        assert "page 3 of 9" in _get(anon, "/", page="3")[1]
        _, books = _get(anon, "/", category="books", min="10", max="300")
        assert "Books" in books
        assert "Garden" not in books.split("<table>", 1)[1]  # filtered (sidebar aside)
        assert "page 1 of 9" in _get(anon, "/", min="nan", max="not a price")[1]  # ignored
        etag = anon.get("/products/6/").headers["etag"]
        assert anon.get("/products/6/", headers={"If-None-Match": etag}).status_code == 304

        # 2. Editing product 5 re-renders its page and the list, and nothing else.
        new_name = "Renamed by the example test"
        form = {"name": new_name, "price": "12.50", "stock": "7", "description": "edited"}
        saved = _post_form(editor, "/products/5/edit/", form)
        assert saved.status_code in (302, 303), saved.text[:500]
        assert saved.headers["location"].endswith("/products/5/")
        state, detail = _get(anon, "/products/5/")
        assert (state, _title(detail)) == ("MISS", new_name)
        assert "12.50" in detail
        assert _get(anon, "/products/5/")[0] == "HIT"
        state, listing = _get(anon, "/")
        assert state == "MISS"
        assert new_name in listing
        assert _get(anon, "/products/6/")[0] == "HIT"  # untouched by the edit

        # 3. The cart lives in the session: it persists across requests (cookie jar only).
        name_7, name_9 = (
            _title(_get(anon, "/products/7/")[1]),
            _title(_get(anon, "/products/9/")[1]),
        )
        for pid, quantity in [(7, "2"), (9, "1"), (7, "1")]:
            added = _post_form(shopper, f"/cart/add/{pid}/", {"quantity": quantity})
            assert added.status_code in (302, 303), added.text[:500]
        for _ in range(2):
            cart = shopper.get("/cart/").text
            assert re.search(rf"{re.escape(name_7)}</a></td><td>3</td>", cart), cart
            assert re.search(rf"{re.escape(name_9)}</a></td><td>1</td>", cart), cart
        # With a session cookie the shared pages bypass the cache; without, still HIT.
        assert shopper.get("/").headers["x-cache"] == "BYPASS"
        assert "Your cart is empty" in httpx.get(f"{base}/cart/").text
        assert _get(anon, "/products/6/")[0] == "HIT"

        # 4. /cachekit/: the live page and its JSON.
        page = anon.get("/cachekit/")
        assert page.status_code == 200
        assert "no-store" in page.headers["cache-control"]
        assert "hit ratio" in page.text
        assert "<svg" in page.text
        stats = anon.get("/cachekit/stats.json").json()["stats"]
        assert set(stats["layers"]) == layers
        assert stats["layers"]["memory"]["hits"] > 0
        for counter in ("loader_calls", "stale_serves", "lock_waits"):
            assert counter in stats
        assert stats["circuit"] == ("closed" if "redis" in layers else "none")


@pytest.mark.parametrize("shop", SHOPS)
def test_shop_in_process_cache(shop: Shop, tmp_path: Path) -> None:
    with shop(tmp_path, None) as base:
        exercise_shop(base, {"memory"})


@pytest.mark.parametrize("shop", SHOPS)
def test_shop_on_redis(shop: Shop, tmp_path: Path, redis_url: str) -> None:
    with shop(tmp_path, redis_url) as base:
        exercise_shop(base, {"memory", "redis"})
