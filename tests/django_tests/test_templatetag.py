"""``{% cachefragment %}``: Django's ``{% cache %}`` on the engine, invalidated by models/tags."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.db import transaction
from django.template import Context, Template, TemplateSyntaxError
from django.test import Client

from cachekit_django import invalidate_tags
from cachekit_django.templatetags.cachekit import fragment_key

from .shopapp.models import Category, Product

pytestmark = pytest.mark.django_db

LOAD = "{% load cachekit %}"


@pytest.fixture(autouse=True)
def _cachekit(settings: Any) -> None:
    options = {"NAMESPACE": "fragments"}
    settings.CACHES = {
        "default": {"BACKEND": "cachekit_django.cache.CachekitCache", "OPTIONS": options}
    }


def render(source: str, **context: Any) -> str:
    return Template(LOAD + source).render(Context(context))


def named(*names: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(name=n) for n in names]


def products_fragment(**options: str) -> str:
    extra = " ".join(f"{k}={v}" for k, v in options.items())
    return (
        f'{{% cachefragment 300 "list" {extra} %}}'
        "{% for p in products %}{{ p.name }},{% endfor %}{% endcachefragment %}"
    )


def test_a_fragment_renders_once_then_comes_from_the_cache(
    django_assert_num_queries: Any,
) -> None:
    Product.objects.create(name="a")
    source = products_fragment(models='"shopapp.Product"')
    with django_assert_num_queries(1):
        assert render(source, products=Product.objects.all()) == "a,"
    with django_assert_num_queries(0):  # the queryset is never evaluated
        assert render(source, products=Product.objects.all()) == "a,"


def test_a_model_save_rerenders_it() -> None:
    source = products_fragment(models='"shopapp.Product,shopapp.Category"')
    Product.objects.create(name="a")
    render(source, products=Product.objects.all())
    Product.objects.create(name="b")
    assert render(source, products=Product.objects.all()) == "a,b,"
    Category.objects.create(name="c")  # the second model listed
    assert render(source, products=named("other")) == "other,"


def test_models_may_be_classes_from_the_context() -> None:
    source = products_fragment(models="models")
    render(source, products=named("x"), models=[Product])
    Product.objects.create(name="p")
    assert render(source, products=named("y"), models=[Product]) == "y,"


def test_tags_invalidate_it() -> None:
    source = products_fragment(tags='"sidebar,menu"')
    assert render(source, products=named("a")) == "a,"
    assert render(source, products=named("b")) == "a,"
    invalidate_tags("menu")
    assert render(source, products=named("c")) == "c,"


def test_vary_on_arguments_make_separate_entries() -> None:
    source = "{% cachefragment 300 sidebar user lang %}{{ body }}{% endcachefragment %}"
    assert render(source, user=1, lang="fr", body="ada-fr") == "ada-fr"
    assert render(source, user=2, lang="fr", body="bob-fr") == "bob-fr"
    assert render(source, user=1, lang="fr", body="changed") == "ada-fr"
    # The name may be quoted or bare, as the same fragment.
    quoted = '{% cachefragment 300 "sidebar" user lang %}{{ body }}{% endcachefragment %}'
    assert render(quoted, user=2, lang="fr", body="x") == "bob-fr"
    # Length-prefixed parts: ("a|b",) and ("a", "b") never share a key.
    assert fragment_key("n", ["a|b"]) != fragment_key("n", ["a", "b"])


def test_the_ttl_may_be_a_variable_or_none() -> None:
    source = "{% cachefragment ttl t %}{{ body }}{% endcachefragment %}"
    assert render(source, ttl=None, body="default") == "default"
    assert render(source, ttl="60", body="x") == "default"
    with pytest.raises(TemplateSyntaxError, match="not a number"):
        render("{% cachefragment ttl u %}x{% endcachefragment %}", ttl="soon")


@pytest.mark.parametrize(
    "source",
    [
        "{% cachefragment 300 %}x{% endcachefragment %}",
        '{% cachefragment 300 n tags="a" tags="b" %}x{% endcachefragment %}',
        "{% cachefragment 300 n %}x",
    ],
)
def test_syntax_errors(source: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        Template(LOAD + source)


@pytest.mark.django_db(transaction=True)
def test_uncommitted_rows_are_never_stored() -> None:
    source = products_fragment(models='"shopapp.Product"')
    with transaction.atomic():
        Product.objects.create(name="uncommitted")
        assert render(source, products=Product.objects.all()) == "uncommitted,"
        transaction.set_rollback(True)
    assert render(source, products=Product.objects.all()) == ""


def test_in_a_page(settings: Any, client: Client) -> None:
    settings.MIDDLEWARE = ["cachekit_django.middleware.CacheMiddleware", *settings.MIDDLEWARE]
    Product.objects.create(name="a")
    first = client.get("/fragment/")
    assert b"a," in first.content
    Product.objects.create(name="b")
    assert b"a,b," in client.get("/fragment/").content
