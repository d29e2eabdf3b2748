from __future__ import annotations

from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    name = models.CharField(max_length=50)
    price = models.IntegerField(default=0)
    categories = models.ManyToManyField(Category, related_name="products", blank=True)

    def __str__(self) -> str:
        return self.name


class FeaturedProduct(Product):
    """A proxy: its pages read the same table as Product's."""

    class Meta:
        proxy = True


class DigitalProduct(Product):
    """Multi-table inheritance: a row here has a parent row in Product's table."""

    url = models.CharField(max_length=100, default="")
