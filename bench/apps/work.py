"""The "plain" work every HTTP contender's view does on a miss (and the plain one always does).

``product_payload(pid)`` builds the JSON body of a product page from an in-memory catalogue of
200 products: it looks the product up, scans the catalogue for the eight cheapest in-stock
products of the same category (a filter + sort over 200 dicts), and assembles a dict that
serialises to about 1 kB. No I/O: the same CPU work (~20-30 us in CPython on this machine) in every
contender, so what differs between them is only the framework path and the cache.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

_CATEGORIES = ("books", "games", "garden", "kitchen", "music", "office", "sports", "toys")
_rng = random.Random(1234)  # the same catalogue in every process

CATALOGUE: list[dict[str, Any]] = [
    {
        "id": i,
        "sku": f"SKU-{i:05d}",
        "name": f"Product {i} " + _rng.choice(("deluxe", "classic", "mini", "pro", "eco")),
        "category": _CATEGORIES[i % len(_CATEGORIES)],
        "price_cents": _rng.randrange(199, 19_999),
        "stock": _rng.randrange(0, 50),
        "rating": round(_rng.uniform(1, 5), 2),
    }
    for i in range(200)
]
_BY_ID = {p["id"]: p for p in CATALOGUE}


#: Counts ``product_payload`` calls (``next()`` on a count is atomic under the GIL): the apps
#: serve it at ``GET /calls`` so the harness can check that a cached contender really served
#: its requests from the cache (the view ran ~once) and the plain one did the work each time.
_calls = itertools.count()


def calls() -> int:
    """How many times ``product_payload`` ran in this process."""
    return int(repr(_calls)[len("count(") : -1])  # a count's repr is its next value


def product_payload(pid: int) -> dict[str, Any]:
    """The product page's data (~1 kB of JSON once serialised)."""
    next(_calls)
    product = _BY_ID[pid % len(CATALOGUE)]
    related = sorted(
        (
            p
            for p in CATALOGUE
            if p["category"] == product["category"] and p["id"] != product["id"] and p["stock"]
        ),
        key=lambda p: (p["price_cents"], p["id"]),
    )[:8]
    blurb = f"{product['name']}: a fine item from our {product['category']} range. "
    return {
        "id": pid,
        "sku": product["sku"],
        "name": product["name"],
        "category": product["category"],
        "price": {"amount": product["price_cents"] / 100, "currency": "EUR"},
        "in_stock": product["stock"] > 0,
        "rating": product["rating"],
        "description": blurb * 3,
        "related": [
            {
                "id": p["id"],
                "sku": p["sku"],
                "name": p["name"],
                "price": p["price_cents"] / 100,
                "rating": p["rating"],
            }
            for p in related
        ],
    }
