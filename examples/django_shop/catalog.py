"""The shop's products (a real shop has a database; a tuple keeps the example about tracking)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Product:
    slug: str
    name: str
    price: Decimal


PRODUCTS = (
    Product("blue-mug", "Blue mug", Decimal("12.50")),
    Product("tea-tin", "Tea tin", Decimal("8.00")),
    Product("teapot", "Cast-iron teapot", Decimal("49.95")),
)
BY_SLUG = {product.slug: product for product in PRODUCTS}
