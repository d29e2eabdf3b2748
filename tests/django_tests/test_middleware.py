"""CacheMiddleware and cache_view end to end: function, class-based and async views."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient, Client

from cachekit_django import cache_view, conf, invalidate_tags
from cachekit_django.middleware import get_http_cache

from .shopapp.testing import renders, stored, url, use_cachekit, x_cache

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _cachekit(settings: Any) -> None:
    use_cachekit(settings)


def test_a_decorated_view_is_served_from_cache_without_running() -> None:
    client = Client()
    first = client.get("/echo/?k=1")
    assert x_cache(first) == "MISS" and first.status_code == 200
    hit = client.get("/echo/?k=1")
    assert x_cache(hit) == "HIT" and renders(hit) == renders(first)
    assert hit.headers["Age"] == "0" and hit.headers["ETag"] == first.headers["ETag"]
    assert hit.headers["Content-Type"] == "text/plain"


def test_undecorated_views_pass_through_untouched(client: Client) -> None:
    """Issue 10 (4): no lookup, no X-Cache, no ETag, no 304 from cachekit for a view that is
    not decorated (conditional GET there is ConditionalGetMiddleware's job)."""
    first = client.get("/static/")
    assert x_cache(first) is None and "ETag" not in first.headers
    conditional = client.get("/static/", headers={"If-None-Match": "*"})
    assert conditional.status_code == 200 and x_cache(conditional) is None
    assert not stored(client, "/plain/?k=2")
    layers = get_http_cache().cache.stats()["layers"]
    assert all(layer["misses"] == 0 for layer in layers.values())


def test_shared_cache_mode_stores_undecorated_views_by_their_headers(settings: Any) -> None:
    use_cachekit(settings, http={"SHARED_CACHE": True})
    client = Client()
    assert stored(client, url("/plain/", "Cache-Control: s-maxage=60"))
    assert not stored(client, url("/plain/"))  # no explicit freshness


@pytest.mark.parametrize("path", ["/cbv/mixin/", "/cbv/decorated/"])
def test_class_based_views(client: Client, path: str) -> None:
    assert stored(client, path)
    invalidate_tags("mixin" if "mixin" in path else "decorated")
    assert x_cache(client.get(path)) == "MISS"


def test_the_mixin_adds_its_model_tags(client: Client) -> None:
    from .shopapp.models import Product

    client.get("/cbv/mixin/")
    Product.objects.create(name="p")
    assert x_cache(client.get("/cbv/mixin/")) == "MISS"


@pytest.mark.parametrize(
    ("path", "tag"),
    [("/async/echo/", "async"), ("/async/cbv/", "async-cbv"), ("/async/mixin/", "async-mixin")],
)
async def test_async_views_through_the_async_middleware(path: str, tag: str) -> None:
    client = AsyncClient()
    first = await client.get(path)
    assert x_cache(first) == "MISS"
    hit = await client.get(path)
    assert x_cache(hit) == "HIT" and renders(hit) == renders(first)
    await get_http_cache().cache.ainvalidate_tags(tag)
    assert x_cache(await client.get(path)) == "MISS"


def test_per_user_pages_are_keyed_by_user_and_private(client: Client) -> None:
    ada = User.objects.create_user("ada")
    bob = User.objects.create_user("bob")
    client.force_login(ada)
    first = client.get("/me/?user=1")
    assert "private" in first.headers["Cache-Control"] and b"user=ada" in first.content
    assert x_cache(client.get("/me/?user=1")) == "HIT"
    other = Client()
    other.force_login(bob)
    theirs = other.get("/me/?user=1")
    assert b"user=bob" in theirs.content and x_cache(theirs) == "MISS"
    assert x_cache(Client().get("/me/?user=1")) == "BYPASS"  # anonymous: no user to key by


@pytest.mark.django_db(transaction=True)
async def test_async_per_user_view_reads_the_user_with_auser() -> None:
    ada = await User.objects.acreate(username="ada")
    client = AsyncClient()
    await client.aforce_login(ada)
    first = await client.get("/async/me/")
    assert b"user=ada" in first.content and x_cache(first) == "MISS"
    assert x_cache(await client.get("/async/me/")) == "HIT"


def test_without_the_middleware_a_decorated_view_caches_on_its_own(
    settings: Any, client: Client
) -> None:
    """Issue 10 (8): as Django's cache_page, cache_view stores and serves by itself."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "cachekit" not in m]
    first, second = client.get("/echo/?k=9"), client.get("/echo/?k=9")
    assert x_cache(first) == "MISS" and x_cache(second) == "HIT"
    assert renders(second) == renders(first)


def test_a_disallowed_host_is_left_to_django(settings: Any, client: Client) -> None:
    settings.ALLOWED_HOSTS = ["shop.example"]
    response = client.get("/echo/", HTTP_HOST="evil.example")
    assert response.status_code == 400


def test_pages_are_shared_between_processes_through_redis(settings: Any, redis_url: str) -> None:
    use_cachekit(settings, redis_url=redis_url)
    client = Client()
    first = client.get("/echo/?k=redis")
    conf.close_all()  # a new engine: an empty L1, as in another process
    hit = client.get("/echo/?k=redis")
    assert x_cache(hit) == "HIT" and renders(hit) == renders(first)
    # Another process invalidates the tag: this one re-renders, within the broadcast delay.
    other = conf.alias_spec("default").build()  # the same store, another engine
    other.invalidate_tags("echo")
    other.close()
    deadline = time.monotonic() + 2
    while x_cache(client.get("/echo/?k=redis")) == "HIT" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert renders(client.get("/echo/?k=redis")) > renders(first)


def test_cache_view_rejects_a_bare_method() -> None:
    from django.test import RequestFactory

    from cachekit_django import cache_view

    class Thing:
        @cache_view(ttl=5)
        def get(self, request: Any) -> None: ...

    with pytest.raises(TypeError, match="method_decorator"):
        Thing().get(RequestFactory().get("/"))


def test_bare_cache_view_decorator(client: Client) -> None:
    from django.http import HttpResponse

    from cachekit_django import cache_view

    @cache_view
    def view(request: Any) -> HttpResponse:
        return HttpResponse("x")

    assert view.__name__ == "view"


def test_query_params_allow_list_caps_the_variants_of_a_path(client: Client) -> None:
    """Issue 11 (9): parameters outside ``cache_view(query_params=...)`` are ignored for
    caching, so junk query strings share one page instead of making one entry each."""
    first = client.get("/listing/?q=shoes&utm_source=mail")
    junk = [client.get(f"/listing/?utm_x={i}&q=shoes&r={i * 7}") for i in range(20)]
    assert x_cache(first) == "MISS" and {x_cache(r) for r in junk} == {"HIT"}
    assert {renders(r) for r in junk} == {renders(first)}
    other = client.get("/listing/?q=shoes&page=2&fbclid=x")
    assert x_cache(other) == "MISS" and x_cache(client.get("/listing/?page=2&q=shoes")) == "HIT"
    local = get_http_cache().cache.local
    assert local is not None and len(local) == 2
    # An unsafe request through the view drops the page of its listed parameters (R4).
    assert client.post("/listing/?q=shoes&utm_source=mail").status_code == 200
    assert x_cache(client.get("/listing/?q=shoes")) == "MISS"
    with pytest.raises(TypeError, match="list of parameter names"):
        cache_view(query_params="q")


async def test_query_params_allow_list_in_async_views() -> None:
    client = AsyncClient()
    first = await client.get("/listing/?q=boots&junk=1")
    second = await client.get("/listing/?junk=2&q=boots")
    assert (x_cache(first), x_cache(second)) == ("MISS", "HIT")
    assert renders(second) == renders(first)
