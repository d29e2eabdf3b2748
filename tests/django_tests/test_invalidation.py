"""Model-driven invalidation: saves, deletes, m2m (both sides), bulk operations, raw SQL and
transactions, on SQLite and (when it answers on 127.0.0.1:5432) PostgreSQL."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connections, transaction
from django.test import Client

from cachekit_core import CacheUnavailable
from cachekit_core.httpcache import Response, ViewOptions
from cachekit_django import invalidate_model, invalidate_tags, tag_for
from cachekit_django._sql import written_tables
from cachekit_django._transactions import _CommitFlush
from cachekit_django.middleware import get_http_cache

from .shopapp.models import Category, DigitalProduct, FeaturedProduct, Product
from .shopapp.testing import page_request, use_cachekit, x_cache

ALIASES = list(django_settings.DATABASES)  # "postgres" only when it is reachable
pytestmark = pytest.mark.django_db(databases=ALIASES)


@pytest.fixture(autouse=True)
def _cachekit(settings: Any) -> None:
    use_cachekit(settings)


@pytest.fixture(params=["default", "postgres"], ids=["sqlite", "postgres"])
def alias(request: pytest.FixtureRequest) -> str:
    if request.param not in django_settings.DATABASES:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (or psycopg is missing)")
    return str(request.param)


class Pages:
    """Fetch shop pages from one database and tell whether they were re-rendered."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.client = Client()

    def get(self, path: str) -> Any:
        return self.client.get(f"{path}?db={self.alias}")

    def warm(self, *paths: str) -> None:
        for path in paths:
            self.get(path)
            assert x_cache(self.get(path)) == "HIT", path

    def rerendered(self, path: str) -> bool:
        return x_cache(self.get(path)) != "HIT"


def store_page(path: str, alias: str, body: bytes, tags: list[str]) -> None:
    """What a reader on another connection does: render (old data) and store the page."""
    http = get_http_cache()
    lookup = http.lookup(page_request(path, f"db={alias}"))
    lookup = http.bind_view(lookup, ViewOptions(ttl=60, tags=tuple(tags)))
    http.store(lookup, Response(200, [("Content-Type", "text/plain")], body))


# --------------------------------------------------------------------------- tags


def test_tag_for() -> None:
    product = Product(pk=7)
    assert tag_for(Product) == "shopapp.product"
    assert tag_for(Product, 7) == tag_for(product) == "shopapp.product:7"
    assert tag_for("shopapp.Product") == tag_for(FeaturedProduct, None).replace(
        "featuredproduct", "product"
    )


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ('INSERT INTO "shop_p" ("a") VALUES (%s)', ["shop_p"]),
        ("UPDATE `shop_p` SET a = 1", ["shop_p"]),
        ('DELETE FROM "public"."shop_p" WHERE id = 1', ["shop_p"]),
        ('TRUNCATE "a", "b" RESTART IDENTITY', ["a", "b"]),
        ("/* tagged */ INSERT OR REPLACE INTO t VALUES (1)", ["t"]),
        ("SELECT * FROM shop_p FOR UPDATE", []),
        ('update "Shop_P" set a = 1', ["shop_p"]),
    ],
)
def test_written_tables(sql: str, tables: list[str]) -> None:
    assert written_tables(sql) == tables


# --------------------------------------------------------------------------- rows


def test_save_invalidates_the_model_and_the_row(alias: str) -> None:
    pages = Pages(alias)
    a = Product.objects.using(alias).create(name="a")
    b = Product.objects.using(alias).create(name="b")
    pages.warm("/products/", f"/products/{a.pk}/", f"/products/{b.pk}/")
    a.name = "a2"
    a.save()
    assert b"a2:0" in pages.get("/products/").content
    assert pages.get(f"/products/{a.pk}/").content.startswith(b"a2:0")
    assert not pages.rerendered(f"/products/{b.pk}/")  # another row's page stays cached


def test_create_and_delete(alias: str) -> None:
    pages = Pages(alias)
    a = Product.objects.using(alias).create(name="a")
    pages.warm("/products/", f"/products/{a.pk}/")
    Product.objects.using(alias).create(name="b")
    assert pages.rerendered("/products/")
    pages.warm("/products/")
    a.delete()
    assert pages.rerendered("/products/")
    assert pages.get(f"/products/{a.pk}/").status_code == 404


def test_m2m_changes_invalidate_both_sides(alias: str) -> None:
    pages = Pages(alias)
    p = Product.objects.using(alias).create(name="p")
    c = Category.objects.using(alias).create(name="c")
    both = (f"/products/{p.pk}/", f"/categories/{c.pk}/")
    for change in (
        lambda: p.categories.add(c),  # forward
        lambda: c.products.remove(p),  # reverse
        lambda: c.products.add(p),  # reverse add
        lambda: p.categories.clear(),  # forward clear: the cleared rows are read first
        lambda: p.categories.set([c]),
        lambda: c.products.clear(),  # reverse clear
    ):
        pages.warm(*both)
        change()
        assert pages.rerendered(both[0]) and pages.rerendered(both[1])
    assert pages.get(both[1]).content == b"c[]"


def test_queryset_update_invalidates_the_model_tag(alias: str) -> None:
    pages = Pages(alias)
    Product.objects.using(alias).create(name="a")
    pages.warm("/products/")
    Product.objects.using(alias).filter(name="a").update(price=5)
    assert b"a:5" in pages.get("/products/").content


def test_bulk_create_and_bulk_update(alias: str) -> None:
    pages = Pages(alias)
    pages.warm("/products/")
    Product.objects.using(alias).bulk_create([Product(name="x"), Product(name="y")])
    assert b"x:0,y:0" in pages.get("/products/").content
    pages.warm("/products/")
    rows = list(Product.objects.using(alias).order_by("pk"))
    for row in rows:
        row.price = 3
    Product.objects.using(alias).bulk_update(rows, ["price"])
    assert b"x:3,y:3" in pages.get("/products/").content


def test_queryset_delete_invalidates_the_model_and_each_row(alias: str) -> None:
    pages = Pages(alias)
    a = Product.objects.using(alias).create(name="a")
    pages.warm("/products/", f"/products/{a.pk}/")
    Product.objects.using(alias).all().delete()
    assert pages.rerendered("/products/")
    assert pages.get(f"/products/{a.pk}/").status_code == 404


def test_proxies_and_multi_table_children_share_their_table(alias: str) -> None:
    pages = Pages(alias)
    a = Product.objects.using(alias).create(name="a")
    pages.warm("/featured/", "/products/", f"/products/{a.pk}/")
    a.save()  # a Product save re-renders the proxy's list
    assert pages.rerendered("/featured/")
    pages.warm("/products/")
    d = DigitalProduct.objects.using(alias).create(name="d")
    assert pages.rerendered("/products/")  # the child wrote the parent's table
    pages.warm(f"/products/{d.pk}/")
    d.url = "x"
    d.save()
    assert pages.rerendered(f"/products/{d.pk}/")  # the child's row is the parent's row


def test_raw_sql_is_seen_too(alias: str) -> None:
    pages = Pages(alias)
    Product.objects.using(alias).create(name="a")
    pages.warm("/products/")
    with connections[alias].cursor() as cursor:
        cursor.execute("UPDATE shopapp_product SET price = 9")
    assert b"a:9" in pages.get("/products/").content


def test_explicit_invalidation(client: Client) -> None:
    pages = Pages("default")
    a = Product.objects.create(name="a")
    pages.warm("/products/", f"/products/{a.pk}/", "/featured/")
    invalidate_model(Product)
    assert pages.rerendered("/products/") and pages.rerendered("/featured/")
    assert not pages.rerendered(f"/products/{a.pk}/")
    invalidate_model(a)
    assert pages.rerendered(f"/products/{a.pk}/")
    client.get("/echo/")
    invalidate_tags("echo")
    assert x_cache(client.get("/echo/")) == "MISS"
    with pytest.raises(TypeError):
        invalidate_tags(["echo"])  # type: ignore[arg-type]


def test_a_failed_invalidation_is_logged_and_never_breaks_the_write(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CACHEKIT = {"CACHE": "missing"}  # no such alias: the engine cannot be found
    with caplog.at_level(logging.ERROR):
        Product.objects.create(name="a")
    assert Product.objects.filter(name="a").exists()
    assert any(
        r.levelno == logging.ERROR and "invalidating" in r.getMessage() for r in caplog.records
    )


def test_an_unreachable_redis_is_logged_at_error(
    settings: Any, private_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    use_cachekit(settings, redis_url=private_redis.url)
    private_redis.stop()
    with caplog.at_level(logging.ERROR):
        Product.objects.create(name="a")
    assert any(r.levelno == logging.ERROR and r.name == "cachekit" for r in caplog.records)


def test_explicit_invalidation_raises_when_redis_is_down(settings: Any, private_redis: Any) -> None:
    use_cachekit(settings, redis_url=private_redis.url)
    invalidate_tags("warm")  # connected: nothing to say
    private_redis.stop()
    with pytest.raises(CacheUnavailable, match="Redis could not be reached"):
        invalidate_tags("echo")
    with pytest.raises(CacheUnavailable):
        invalidate_model(Product)
    Product.objects.create(name="b")  # a hook's invalidation never breaks the write
    assert Product.objects.filter(name="b").exists()


@pytest.mark.django_db(transaction=True, databases=ALIASES)
def test_a_failed_explicit_invalidation_is_still_repeated_on_commit(
    settings: Any, private_redis: Any
) -> None:
    use_cachekit(settings, redis_url=private_redis.url)
    private_redis.stop()
    with transaction.atomic():
        with pytest.raises(CacheUnavailable):
            invalidate_tags("echo")
        flushes = [entry[1] for entry in connections["default"].run_on_commit]
        assert any(isinstance(f, _CommitFlush) and "echo" in f.tags for f in flushes)


# --------------------------------------------------------------------------- transactions


@pytest.mark.django_db(transaction=True, databases=ALIASES)
def test_a_reader_between_the_write_and_the_commit_cannot_keep_pre_commit_data(
    alias: str,
) -> None:
    pages = Pages(alias)
    a = Product.objects.using(alias).create(name="old")
    pages.warm("/products/")
    with transaction.atomic(using=alias):
        a.name = "new"
        a.save()
        # At once: this connection's own reader re-renders, sees its write, stores nothing.
        inside = pages.get("/products/")
        assert b"new:0" in inside.content and x_cache(inside) == "BYPASS"
        # A reader on another connection still sees "old" and stores it meanwhile.
        store_page("/products/", alias, b"old:0;n=0", [tag_for(Product)])
        assert pages.get("/products/").content == b"old:0;n=0"
    after = pages.get("/products/")  # the commit invalidated again
    assert b"new:0" in after.content and x_cache(after) == "MISS"


@pytest.mark.django_db(transaction=True, databases=ALIASES)
def test_a_real_reader_on_another_connection(alias: str) -> None:
    if alias == "default":
        pytest.skip("in-memory SQLite locks readers out of a table being written")
    pages = Pages(alias)
    Product.objects.using(alias).create(name="old")
    seen: list[bytes] = []

    def reader() -> None:
        try:
            seen.append(Client().get(f"/products/?db={alias}").content)
        finally:
            connections.close_all()

    with transaction.atomic(using=alias):
        Product.objects.using(alias).update(name="new")
        thread = threading.Thread(target=reader)
        thread.start()
        thread.join()
        assert b"old:0" in seen[0]  # read and stored pre-commit data
    assert b"new:0" in pages.get("/products/").content


@pytest.mark.django_db(transaction=True, databases=ALIASES)
def test_a_rollback_leaves_no_stale_entry(alias: str) -> None:
    pages = Pages(alias)
    Product.objects.using(alias).create(name="old")
    pages.warm("/products/")

    with transaction.atomic(using=alias):
        Product.objects.using(alias).update(name="undone")
        assert b"undone" in pages.get("/products/").content  # seen here, never stored
        transaction.set_rollback(True, using=alias)
    page = pages.get("/products/")
    assert b"old:0" in page.content
    assert x_cache(pages.get("/products/")) == "HIT"


@pytest.mark.django_db(transaction=True, databases=ALIASES)
def test_a_savepoint_rollback_drops_only_its_own_invalidations(alias: str) -> None:
    pages = Pages(alias)
    kept = Product.objects.using(alias).create(name="kept")
    undone = Product.objects.using(alias).create(name="undone")
    kept_page, undone_page = f"/products/{kept.pk}/", f"/products/{undone.pk}/"
    with transaction.atomic(using=alias):
        kept.price = 1
        kept.save()
        try:
            with transaction.atomic(using=alias):
                undone.price = 2
                undone.save()
                raise RuntimeError
        except RuntimeError:
            pass
        # Readers elsewhere cache both rows as committed so far.
        store_page(kept_page, alias, b"kept:0[]", [tag_for(Product, kept.pk)])
        store_page(undone_page, alias, b"undone:0[]", [tag_for(Product, undone.pk)])
    assert pages.get(kept_page).content == b"kept:1[]"  # invalidated on commit
    assert pages.get(undone_page).content == b"undone:0[]"  # still right: nothing to redo


@pytest.mark.django_db(transaction=True, databases=ALIASES)
def test_writes_at_one_level_share_one_commit_callback(alias: str) -> None:
    conn = connections[alias]
    with transaction.atomic(using=alias):
        for name in "abc":
            Product.objects.using(alias).create(name=name)
        flushes = [f for _, f, _ in conn.run_on_commit if isinstance(f, _CommitFlush)]
        assert len(flushes) == 1
        assert {tag_for(Product), tag_for(FeaturedProduct)} <= flushes[0].tags
