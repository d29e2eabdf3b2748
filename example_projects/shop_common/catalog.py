"""A deterministic product catalogue: the same seed gives the same shop in both apps."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

CATEGORIES = [
    "Books",
    "Music",
    "Games",
    "Garden",
    "Kitchen",
    "Toys",
    "Tools",
    "Sports",
    "Outdoors",
    "Office",
    "Pets",
    "Baby",
    "Beauty",
    "Health",
    "Lighting",
    "Bikes",
    "Camping",
    "Crafts",
    "Audio",
    "Travel",
]
_ADJECTIVES = ["Classic", "Compact", "Deluxe", "Eco", "Handy", "Mini", "Pro", "Smart", "Sturdy"]
_NOUNS = ["Kit", "Set", "Box", "Pack", "Case", "Stand", "Lamp", "Mug", "Bag", "Rack", "Board"]
PER_PAGE = 24


def slugify(name: str) -> str:
    return name.lower().replace(" ", "-")


@dataclass(frozen=True, slots=True)
class SeedProduct:
    name: str
    category: int  # index into CATEGORIES
    price: Decimal
    stock: int
    description: str


def products(count: int = 3000, seed: int = 2024) -> Iterator[SeedProduct]:
    """``count`` products spread over the categories, always the same for the same seed."""
    rng = random.Random(seed)
    for i in range(1, count + 1):
        category = rng.randrange(len(CATEGORIES))
        name = f"{rng.choice(_ADJECTIVES)} {CATEGORIES[category]} {rng.choice(_NOUNS)} {i}"
        price = Decimal(rng.randrange(199, 49_999)) / 100
        yield SeedProduct(
            name=name,
            category=category,
            price=price,
            stock=rng.randrange(0, 250),
            description=f"{name}: a fine item from our {CATEGORIES[category]} aisle.",
        )


def clamp_quantity(value: str | None) -> int:
    """A cart quantity from a form field: 1-99, 1 when missing or not a number."""
    try:
        return max(1, min(99, int(value or 1)))
    except ValueError:
        return 1
