"""Invalidate cache tags when a SQLAlchemy transaction commits.

``watch(SessionLocal, cache)`` hooks a session factory's events. Rows inserted, updated or
deleted by a flush, and tables hit by ORM-enabled ``insert``/``update``/``delete`` statements
run through ``Session.execute``, are recorded in an ``InvalidationBuffer`` kept in
``session.info``; when the outermost transaction commits, the tags ``"<table>"`` and
``"<table>:<pk>"`` (a composite key joined with ``":"``) are invalidated. A rollback, of the
transaction or of a savepoint (``begin_nested``), forgets what it recorded.

Async sessions run these events inside SQLAlchemy's greenlet bridge, in sync code on the
event loop's thread, where nothing can be awaited. The commit hook therefore calls the sync
``cache.invalidate_tags``: it is thread-safe and does its own (short, timeout-bounded) Redis
I/O, and the invalidation is done before ``await session.commit()`` returns, so the next read
cannot find the old entry. Scheduling ``ainvalidate_tags`` instead would leave that window open.

A bulk ``update``/``delete`` with a WHERE clause invalidates its table tag (row tags only for
rows passed by primary key): which rows it matched is unknown without another query, so an
entry that must follow such statements should carry the table tag too. Not seen at all: raw
SQL (``text()``), writes through ``session.connection()`` or another connection, and rows
changed by the database itself (cascades, triggers); invalidate those explicitly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, SessionTransaction

from cachekit_core import Cache
from cachekit_core.invalidation import InvalidationBuffer

__all__ = ["Watch", "tag_for", "watch"]

log = logging.getLogger("cachekit.fastapi.sqlalchemy")


def tag_for(target: Any, *pk: Any) -> str:
    """Return the tag ``watch`` invalidates for a mapped class or table, or one of its rows."""
    table = getattr(target, "__table__", target)
    name = getattr(table, "name", target)
    if not isinstance(name, str):
        raise TypeError(f"tag_for() needs a mapped class, a table or a name, not {target!r}")
    return ":".join([name, *map(str, pk)]) if pk else name


@dataclass
class _State:
    """One watcher's view of one session: the buffer and the transactions it mirrors."""

    buffer: InvalidationBuffer = field(default_factory=InvalidationBuffer)
    # The transactions behind the buffer's levels, outermost first.
    frames: list[SessionTransaction] = field(default_factory=list)
    # Tags from a statement run before the session had begun (autobegin comes just after).
    early: set[str] = field(default_factory=set)


class Watch:
    """The listeners ``watch`` installed on one target; ``remove()`` uninstalls them."""

    def __init__(self, target: Any, cache: Cache) -> None:
        self.target = target
        self.cache = cache
        self._listeners: list[tuple[str, Callable[..., Any]]] = [
            ("after_transaction_create", self._on_create),
            ("after_transaction_end", self._on_end),
            ("after_flush", self._on_flush),
            ("do_orm_execute", self._on_execute),
            ("after_commit", self._on_commit),
        ]
        for name, fn in self._listeners:
            event.listen(target, name, fn)

    def remove(self) -> None:
        """Stop watching the target."""
        for name, fn in self._listeners:
            event.remove(self.target, name, fn)

    def _state(self, session: Session) -> _State:
        state = session.info.get(self)
        if state is None:
            state = session.info[self] = _State()
        assert isinstance(state, _State)
        return state

    # -- transaction shape -------------------------------------------------------------------
    def _on_create(self, session: Session, transaction: SessionTransaction) -> None:
        state = self._state(session)
        if transaction.nested:
            if state.frames:
                state.buffer.savepoint()
                state.frames.append(transaction)
        elif transaction.parent is None:
            state.buffer.rollback()  # defensive: a root whose end we never saw
            state.frames[:] = [transaction]
            state.buffer.begin()
            if state.early:
                state.buffer.add(*state.early)
                state.early.clear()
        # Other transactions are the ORM's internal subtransactions (e.g. one per flush):
        # they commit nothing themselves, so they get no level of their own.

    def _on_commit(self, session: Session) -> None:
        # Fired for the root and for each released savepoint, before the transaction closes,
        # so the committing transaction is still the session's current one.
        state = self._state(session)
        if not state.frames:
            return
        nested = session.get_nested_transaction()
        if nested is not None:
            if len(state.frames) > 1 and state.frames[-1] is nested:
                state.buffer.release_savepoint()
                state.frames.pop()
            return
        if state.frames[0] is session.get_transaction():
            tags = state.buffer.commit()
            state.frames.clear()
            self._invalidate(tags)

    def _on_end(self, session: Session, transaction: SessionTransaction) -> None:
        # A committed transaction left ``frames`` in _on_commit; one still there ended without
        # committing (rollback, close, failed flush): what it recorded never became visible.
        state = self._state(session)
        if not any(frame is transaction for frame in state.frames):
            return
        while state.frames:
            frame = state.frames.pop()
            if state.frames:
                state.buffer.rollback_savepoint()
            else:
                state.buffer.rollback()
            if frame is transaction:
                break

    # -- what changed ----------------------------------------------------------------------------
    def _on_flush(self, session: Session, flush_context: Any) -> None:
        # after_flush still shows the flushed objects in new/dirty/deleted.
        tags: set[str] = set()
        for objects in (session.new, session.dirty, session.deleted):
            for obj in objects:
                tags.update(_instance_tags(obj))
        self._record(session, tags)

    def _on_execute(self, execute_state: ORMExecuteState) -> None:
        if not (execute_state.is_insert or execute_state.is_update or execute_state.is_delete):
            return
        tags: set[str] = set()
        for involved in execute_state.all_mappers:
            tags.update(_table_names(involved))
        target = getattr(execute_state.statement, "table", None)
        if isinstance(getattr(target, "name", None), str):
            tags.add(target.name)  # type: ignore[union-attr]
        mapper = execute_state.bind_mapper
        if mapper is not None:
            tags.update(_bulk_row_tags(mapper, execute_state.parameters))
        self._record(execute_state.session, tags)

    def _record(self, session: Session, tags: set[str]) -> None:
        if not tags:
            return
        state = self._state(session)
        if state.frames:
            state.buffer.add(*tags)
            return
        root = session.get_transaction()
        if root is None:
            state.early.update(tags)
        else:
            # watch() was called while this session was already inside a transaction.
            state.buffer.begin()
            state.frames.append(root)
            state.buffer.add(*tags)

    def _invalidate(self, tags: set[str]) -> None:
        if not tags:
            return
        try:
            self.cache.invalidate_tags(*sorted(tags))
        except Exception:
            # The commit has happened: raising here would only make the caller believe it had
            # not. Loud instead; the engine replays invalidations Redis missed once it is back.
            log.exception(
                "cachekit: invalidation after commit failed (namespace=%s, %d tag(s))",
                self.cache.namespace,
                len(tags),
            )


def watch(target: Any, cache: Cache) -> Watch:
    """Invalidate ``cache`` tags for rows and tables changed by transactions of ``target``.

    ``target``: a ``sessionmaker``, ``scoped_session``, ``Session`` subclass or instance, an
    ``async_sessionmaker`` or an ``AsyncSession`` subclass or instance. An ``async_sessionmaker``
    whose sessions use the plain ``Session`` gets a private subclass of it, so that only its
    own sessions are watched; a bare ``Session`` or ``AsyncSession`` class watches every session.
    """
    return Watch(_sync_target(target), cache)


def _sync_target(target: Any) -> Any:
    """Where the events of ``target``'s sync sessions can be listened to."""
    try:
        from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
    except ImportError:  # no greenlet (sqlalchemy[asyncio]): no async session can exist
        return target
    if isinstance(target, async_sessionmaker):
        sync_class = target.kw.get("sync_session_class") or target.class_.sync_session_class
        if sync_class is Session:
            # As sessionmaker does for its own sessions: a private subclass keeps the listeners
            # off every other Session in the process.
            sync_class = type("Session", (Session,), {})
            target.configure(sync_session_class=sync_class)
        return sync_class
    if isinstance(target, AsyncSession):
        return target.sync_session
    if isinstance(target, type) and issubclass(target, AsyncSession):
        return target.sync_session_class
    # sessionmaker, scoped_session, Session class or instance: SQLAlchemy takes them as they
    # are (and says what it needs when given anything else).
    return target


def _table_names(mapper: Mapper[Any]) -> set[str]:
    return {
        name for table in mapper.tables if isinstance(name := getattr(table, "name", None), str)
    }


def _instance_tags(obj: object) -> set[str]:
    """Table and row tags of a flushed object, read without loading anything."""
    state = sa_inspect(obj)
    mapper = state.mapper
    keys: set[tuple[Any, ...]] = set()
    if state.identity is not None:
        keys.add(tuple(state.identity))  # the key it was loaded under (before any pk change)
    current = tuple(
        state.dict.get(mapper.get_property_by_column(c).key) for c in mapper.primary_key
    )
    if all(v is not None for v in current):
        keys.add(current)  # new objects get theirs from the INSERT just flushed
    tables = _table_names(mapper)
    return tables | {":".join([t, *map(str, key)]) for t in tables for key in keys}


def _bulk_row_tags(mapper: Mapper[Any], parameters: Any) -> Iterable[str]:
    """Row tags of an ORM bulk statement given rows with their primary keys."""
    rows = parameters if isinstance(parameters, list) else [parameters]
    names = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
    tables = _table_names(mapper)
    for row in rows:
        if isinstance(row, dict) and all(row.get(n) is not None for n in names):
            key = ":".join(str(row[n]) for n in names)
            yield from (f"{table}:{key}" for table in tables)
