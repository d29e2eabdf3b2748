from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import Engine, create_engine, delete, event, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from cachekit_core import Cache
from cachekit_fastapi.sqlalchemy import tag_for, watch
from tests.support.redis_server import RedisServer


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    price: Mapped[int]


class OrderLine(Base):
    __tablename__ = "order_lines"
    order_id: Mapped[int] = mapped_column(primary_key=True)
    line_no: Mapped[int] = mapped_column(primary_key=True)
    qty: Mapped[int]


def _real_savepoints(sync_engine: Engine) -> None:
    # pysqlite opens transactions lazily and on its own terms, which breaks SAVEPOINT; the
    # documented cure: let SQLAlchemy emit BEGIN itself.
    @event.listens_for(sync_engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(
        f"sqlite:///{tmp_path / 'shop.db'}", connect_args={"check_same_thread": False}
    )
    _real_savepoints(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Product(id=i, name=f"p{i}", price=10 * i) for i in (1, 2, 3)])
        session.add(OrderLine(order_id=1, line_no=2, qty=1))
        session.commit()
    yield engine
    engine.dispose()


@pytest.fixture
def cache() -> Iterator[Cache]:
    with Cache() as cache:
        yield cache


@pytest.fixture
def factory(engine: Engine, cache: Cache) -> Iterator[sessionmaker[Session]]:
    factory = sessionmaker(engine)
    watcher = watch(factory, cache)
    yield factory
    watcher.remove()


def seed(cache: Cache) -> None:
    """Cached values as views would hold them: one per row, plus the list of all."""
    for pid in (1, 2, 3):
        cache.set(f"product:{pid}", {"id": pid}, tags=[f"products:{pid}"])
    cache.set("product-list", [1, 2, 3], tags=["products"])
    cache.set("line:1:2", {"qty": 1}, tags=["order_lines:1:2"])


def cached(cache: Cache) -> set[str]:
    keys = ["product:1", "product:2", "product:3", "product-list", "line:1:2"]
    return {key for key in keys if cache.get(key) is not None}


ALL = {"product:1", "product:2", "product:3", "product-list", "line:1:2"}


def test_tag_for_names_tables_and_rows() -> None:
    assert tag_for(Product) == "products"
    assert tag_for(Product, 1) == "products:1"
    assert tag_for(OrderLine.__table__, 1, 2) == "order_lines:1:2"
    assert tag_for("products", 7) == "products:7"
    with pytest.raises(TypeError):
        tag_for(42)


def test_a_commit_invalidates_the_table_and_the_changed_rows_only(
    factory: sessionmaker[Session], cache: Cache
) -> None:
    seed(cache)
    with factory() as session:
        session.get_one(Product, 1).price = 99
        session.flush()
        assert cached(cache) == ALL  # flushed but not committed: others still see the old row
        session.commit()
    assert cached(cache) == {"product:2", "product:3", "line:1:2"}


def test_inserts_and_deletes_invalidate_their_rows(
    factory: sessionmaker[Session], cache: Cache
) -> None:
    cache.set("product:4", "absent", tags=["products:4"])  # e.g. a cached "not found"
    seed(cache)
    with factory() as session:
        session.add(Product(id=4, name="p4", price=40))
        session.delete(session.get_one(Product, 3))
        session.commit()
    assert cached(cache) == {"product:1", "product:2", "line:1:2"}
    assert cache.get("product:4") is None


def test_composite_primary_keys_are_joined_with_colons(
    factory: sessionmaker[Session], cache: Cache
) -> None:
    seed(cache)
    with factory() as session:
        session.get_one(OrderLine, (1, 2)).qty = 5
        session.commit()
    assert cached(cache) == {"product:1", "product:2", "product:3", "product-list"}


def test_a_rollback_invalidates_nothing(factory: sessionmaker[Session], cache: Cache) -> None:
    seed(cache)
    with factory() as session:
        session.get_one(Product, 1).price = 99
        session.flush()
        session.rollback()
        session.get_one(Product, 2).name = "read, not written"
        session.expunge_all()
        session.commit()  # a later empty commit must not resurrect the rolled-back tags
    with factory() as session:
        session.get_one(Product, 3).price = 1
        session.flush()
    # closed without commit: rolled back
    assert cached(cache) == ALL


def test_a_rolled_back_savepoint_discards_only_its_own_tags(
    factory: sessionmaker[Session], cache: Cache, engine: Engine
) -> None:
    seed(cache)
    with factory() as session:
        session.get_one(Product, 1).price = 11
        with session.begin_nested() as savepoint:
            session.get_one(Product, 2).price = 22
            session.flush()
            savepoint.rollback()
        with session.begin_nested():
            session.get_one(Product, 3).price = 33  # released: belongs to the outer commit
        assert cached(cache) == ALL
        session.commit()
    assert cached(cache) == {"product:2", "line:1:2"}
    with Session(engine) as check:
        assert [p.price for p in check.scalars(select(Product).order_by(Product.id))] == [
            11,
            20,
            33,
        ]


def test_commit_inside_a_savepoint_commits_everything(
    factory: sessionmaker[Session], cache: Cache
) -> None:
    seed(cache)
    with factory.begin() as session:  # the sessionmaker's own transaction block
        session.get_one(Product, 1).price = 1
        session.begin_nested()
        session.get_one(Product, 2).price = 2
    assert cached(cache) == {"product:3", "line:1:2"}
    seed(cache)
    with factory() as session:
        session.begin_nested()
        session.get_one(Product, 3).price = 3
        session.commit()  # Session.commit() commits the savepoint and the transaction
    assert cached(cache) == ALL - {"product:3", "product-list"}


def test_a_failed_flush_invalidates_nothing(factory: sessionmaker[Session], cache: Cache) -> None:
    seed(cache)
    with factory() as session:
        session.get_one(Product, 1).price = 5
        session.add(Product(id=2, name="duplicate", price=0))
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
    assert cached(cache) == ALL


def test_bulk_statements_invalidate_the_table(factory: sessionmaker[Session], cache: Cache) -> None:
    seed(cache)
    with factory() as session:
        session.execute(update(Product).where(Product.price > 15).values(price=0))
        session.commit()
    assert cached(cache) == ALL - {"product-list"}  # which rows matched is not known
    seed(cache)
    cache.set("line-view", 1, tags=["order_lines", "order_lines:1:2"])
    with factory() as session:
        session.execute(delete(OrderLine).where(OrderLine.qty > 100))
        session.execute(insert(Product).values(id=9, name="p9", price=90))
        session.commit()
    assert cached(cache) == ALL - {"product-list"}
    assert cache.get("line-view") is None  # an entry that must follow bulk writes: table tag


def test_bulk_update_by_primary_key_invalidates_those_rows(
    factory: sessionmaker[Session], cache: Cache
) -> None:
    seed(cache)
    with factory() as session:
        session.execute(update(Product), [{"id": 2, "price": 5}])
        session.commit()
    assert cached(cache) == {"product:1", "product:3", "line:1:2"}


def test_a_bulk_statement_rolled_back_invalidates_nothing(
    factory: sessionmaker[Session], cache: Cache
) -> None:
    seed(cache)
    with factory() as session:
        session.execute(update(Product).values(price=0))  # runs before any explicit begin
        session.rollback()
    assert cached(cache) == ALL


def test_remove_stops_watching(engine: Engine, cache: Cache) -> None:
    factory = sessionmaker(engine)
    watch(factory, cache).remove()
    seed(cache)
    with factory() as session:
        session.get_one(Product, 1).price = 0
        session.commit()
    assert cached(cache) == ALL


def test_a_single_session_instance_can_be_watched(engine: Engine, cache: Cache) -> None:
    seed(cache)
    with Session(engine) as session:
        watch(session, cache)
        session.get_one(Product, 1).price = 0
        session.commit()
    assert "product:1" not in cached(cache)


def test_a_failed_invalidation_is_logged_and_the_commit_stands(
    engine: Engine, private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = Cache.from_url(
        private_redis.url, raise_on_error=True, socket_timeout=0.2, secret_key="test-secret"
    )
    factory = sessionmaker(engine)
    watch(factory, cache)
    private_redis.stop()
    with caplog.at_level(logging.ERROR), factory() as session:
        session.get_one(Product, 1).price = 7
        session.commit()
    cache.close()
    records = [r for r in caplog.records if r.name == "cachekit.fastapi.sqlalchemy"]
    assert records and records[0].levelno == logging.ERROR
    with Session(engine) as check:
        assert check.get_one(Product, 1).price == 7


def test_sync_sessions_need_no_greenlet(tmp_path: Path) -> None:
    # sqlalchemy.ext.asyncio refuses to import without greenlet, which the plain `sqlalchemy`
    # extra does not install: watching sync sessions must not need it.
    code = (
        "import sys; sys.modules['greenlet'] = None\n"
        "from sqlalchemy import create_engine\n"
        "from sqlalchemy.orm import sessionmaker\n"
        "from cachekit_core import Cache\n"
        "from cachekit_fastapi.sqlalchemy import watch\n"
        "watch(sessionmaker(create_engine('sqlite://')), Cache()).remove()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- async ---------------------------------------------------------------------------------------


@pytest.fixture
async def async_engine(engine: Engine, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    # `engine` created and seeded the database file; this one talks to it through aiosqlite.
    async_engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}")
    _real_savepoints(async_engine.sync_engine)
    yield async_engine
    await async_engine.dispose()


@pytest.fixture
def async_factory(async_engine: AsyncEngine, cache: Cache) -> async_sessionmaker[AsyncSession]:
    factory = async_sessionmaker(async_engine, expire_on_commit=False)
    watch(factory, cache)
    return factory


async def test_async_sessions_invalidate_on_commit_only(
    async_factory: async_sessionmaker[AsyncSession], cache: Cache
) -> None:
    seed(cache)
    async with async_factory() as session:
        (await session.get_one(Product, 1)).price = 99
        await session.flush()
        await session.rollback()
    assert cached(cache) == ALL
    async with async_factory() as session:
        (await session.get_one(Product, 1)).price = 99
        savepoint = await session.begin_nested()
        (await session.get_one(Product, 2)).price = 98
        await session.flush()
        await savepoint.rollback()
        await session.execute(update(Product).where(Product.id == 3).values(price=3))
        await session.commit()
    assert cached(cache) == {"product:2", "product:3", "line:1:2"}


async def test_async_watch_does_not_leak_to_other_factories(
    async_engine: AsyncEngine, async_factory: async_sessionmaker[AsyncSession], cache: Cache
) -> None:
    seed(cache)
    async with async_sessionmaker(async_engine)() as session:
        (await session.get_one(Product, 1)).price = 0
        await session.commit()
    assert cached(cache) == ALL


async def test_async_commit_invalidates_other_processes_through_redis(
    async_engine: AsyncEngine, redis_url: str
) -> None:
    writer, reader = (
        Cache.from_url(redis_url, secret_key="test-secret"),
        Cache.from_url(redis_url, secret_key="test-secret"),
    )
    try:
        factory = async_sessionmaker(async_engine)
        watch(factory, writer)
        await reader.aset("product:1", {"id": 1}, tags=["products:1"])
        await reader.aset("product:2", {"id": 2}, tags=["products:2"])
        async with factory() as session:
            (await session.get_one(Product, 1)).price = 0
            await session.commit()
        # Redis holds the new tag version at once (the reader's L1 learns it by broadcast).
        fresh = Cache.from_url(redis_url, l1=False, secret_key="test-secret")
        assert await fresh.aget("product:1") is None
        assert await fresh.aget("product:2") == {"id": 2}
        await fresh.aclose()
    finally:
        await writer.aclose()
        await reader.aclose()


# -- through a FastAPI app -------------------------------------------------------------------------


async def test_fastapi_endpoints_with_sync_and_async_sessions(
    factory: sessionmaker[Session],
    async_factory: async_sessionmaker[AsyncSession],
    cache: Cache,
) -> None:
    app = FastAPI()

    def db() -> Iterator[Session]:
        with factory() as session:
            yield session

    @app.get("/products/{pid}")
    async def show(pid: int) -> Any:
        async def load() -> dict[str, int]:
            async with async_factory() as session:
                product = await session.get_one(Product, pid)
                return {"id": pid, "price": product.price}

        return await cache.aget_or_set(f"product:{pid}", load, tags=[tag_for(Product, pid)])

    @app.put("/products/{pid}")
    def edit(pid: int, price: int, session: Session = Depends(db)) -> dict[str, str]:  # noqa: B008
        session.get_one(Product, pid).price = price
        session.commit()
        return {"status": "ok"}

    @app.post("/products/{pid}/async")
    async def edit_async(pid: int, price: int) -> dict[str, str]:
        async with async_factory() as session:
            (await session.get_one(Product, pid)).price = price
            await session.commit()
        return {"status": "ok"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/products/1")).json() == {"id": 1, "price": 10}
        assert (await client.get("/products/2")).json() == {"id": 2, "price": 20}
        await client.put("/products/1", params={"price": 15})
        assert (await client.get("/products/1")).json() == {"id": 1, "price": 15}
        await client.post("/products/1/async", params={"price": 16})
        assert (await client.get("/products/1")).json() == {"id": 1, "price": 16}
    assert cache.get("product:2") == {"id": 2, "price": 20}  # untouched row stays cached
