"""``manage.py seed_shop [--count 3000]``: the deterministic catalogue (skipped if seeded)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from shop_common.catalog import CATEGORIES, products, slugify

from shop.models import Category, Product


class Command(BaseCommand):
    help = "Seed the shop with a deterministic catalogue (does nothing if products exist)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=3000)

    def handle(self, *args: Any, count: int, **options: Any) -> None:
        if Product.objects.exists():
            self.stdout.write("already seeded")
            return
        with transaction.atomic():
            # bulk_create invalidates the Product and Category tags too (cachekit sees it).
            categories = Category.objects.bulk_create(
                Category(name=name, slug=slugify(name)) for name in CATEGORIES
            )
            Product.objects.bulk_create(
                (
                    Product(
                        name=p.name,
                        category=categories[p.category],
                        price=p.price,
                        stock=p.stock,
                        description=p.description,
                    )
                    for p in products(count)
                ),
                batch_size=500,
            )
        self.stdout.write(f"seeded {count} products in {len(CATEGORIES)} categories")
