"""SQLAlchemy models and the session factory that cachekit watches."""

from __future__ import annotations

import os
from pathlib import Path

from shop_common.catalog import CATEGORIES, products, slugify
from sqlalchemy import ForeignKey, String, create_engine, func, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

DEFAULT_DB = Path(__file__).resolve().parent.parent / ".data" / "fastapi_shop.sqlite3"
DB_PATH = Path(os.environ.get("SHOP_DB", DEFAULT_DB))


class Base(DeclarativeBase):
    pass


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    slug: Mapped[str] = mapped_column(String(50), unique=True)


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"), index=True)
    price_cents: Mapped[int] = mapped_column(index=True)
    stock: Mapped[int] = mapped_column(default=0)
    description: Mapped[str] = mapped_column(default="")
    category: Mapped[Category] = relationship(lazy="joined")

    @property
    def price(self) -> str:
        return f"{self.price_cents / 100:.2f}"


DB_PATH.parent.mkdir(parents=True, exist_ok=True)
engine = create_engine(f"sqlite:///{DB_PATH}", connect_args={"check_same_thread": False})
SessionLocal = sessionmaker(engine, expire_on_commit=False)


def create_and_seed(count: int) -> None:
    """Create the tables and seed the deterministic catalogue unless products exist."""
    Base.metadata.create_all(engine)
    with SessionLocal() as db:
        if db.scalar(select(func.count()).select_from(Product)):
            return
        categories = [Category(name=name, slug=slugify(name)) for name in CATEGORIES]
        db.add_all(categories)
        db.flush()
        rows = [
            {
                "name": p.name,
                "category_id": categories[p.category].id,
                "price_cents": int(p.price * 100),
                "stock": p.stock,
                "description": p.description,
            }
            for p in products(count)
        ]
        db.execute(insert(Product), rows)  # an ORM bulk insert: watch sees the table tag
        db.commit()
