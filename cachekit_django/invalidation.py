"""Model-driven invalidation: ``tag_for``, ``invalidate_model``, ``invalidate_tags`` and the
ORM hooks that call them.

Tags: ``"<app_label>.<model_name>"`` for a model (every row) and ``"...:<pk>"`` for one row.

Which hook catches what:

- **Row tags** come from signals: ``post_save`` / ``post_delete`` (the instance) and
  ``m2m_changed`` (the instance and every row on the other side, ``clear()`` included: the
  cleared rows are read in ``pre_clear``). Connecting ``post_delete`` also makes
  ``QuerySet.delete()`` send it per row (Django skips its fast delete when a receiver listens).
- **Model tags** come from the SQL layer: an *execute wrapper* (Django's documented
  ``connection.execute_wrappers`` hook), installed on every connection as it connects, reads
  the table of each ``INSERT`` / ``UPDATE`` / ``DELETE`` / ``TRUNCATE`` that succeeded and
  invalidates every model that reads that table. This is what catches ``QuerySet.update()``,
  ``bulk_create()``, ``bulk_update()`` and raw SQL, which send no signals.

Why the execute wrapper rather than the alternatives: a manager/QuerySet mixin must be opted
into by every model (and forgotten once is a stale page), and monkey-patching ``QuerySet``
breaks with the next Django release and misses raw SQL. The wrapper is public API, needs
nothing from the user's models, costs one anchored regex per statement, and sees exactly the
statements that ran. Its limit: SQL not run through Django's cursors (a raw DB-API cursor) is
not seen.

"Models that read a table" are the model that owns it, its proxies and its multi-table
children (a child's page shows its parents' columns); an m2m through table is read by both
sides. Saving a row invalidates the row tag of each of those models.

Transactions: a tag is invalidated at once and again on commit; while a thread holds
uncommitted writes, what it renders is not stored (see ``_transactions``). A failed
invalidation inside a hook never breaks the write: it is logged at ERROR (the engine also
queues it and replays it once Redis is reachable again).
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.models.signals import class_prepared, m2m_changed, post_delete, post_save

from ._sql import written_tables
from ._transactions import schedule as _schedule
from ._transactions import uncommitted_writes

__all__ = [
    "connect",
    "invalidate_model",
    "invalidate_tags",
    "tag_for",
    "uncommitted_writes",
    "written_tables",
]

ModelOrInstance = type[models.Model] | models.Model | str

# Rows written on every request (or by migrate itself): invalidating them would only cost a
# Redis round trip per request.
_SKIPPED = frozenset({"sessions.session", "migrations.migration"})


# --------------------------------------------------------------------------- public API


def _model(target: ModelOrInstance) -> type[models.Model]:
    if isinstance(target, str):
        return apps.get_model(target)  # "app_label.ModelName", case-insensitive
    return target if isinstance(target, type) else type(target)


def tag_for(model: ModelOrInstance, pk: Any = None) -> str:
    """Return the tag of ``model`` (a class, an instance or ``"app_label.Model"``), or of one
    of its rows when ``pk`` is given. An instance alone names its own row."""
    if pk is None and isinstance(model, models.Model):
        pk = model.pk
    label = _model(model)._meta.label_lower
    return label if pk is None else f"{label}:{pk}"


def invalidate_tags(*tags: str, using: str | None = DEFAULT_DB_ALIAS) -> None:
    """Invalidate ``tags`` now and, inside a transaction on ``using``, again on commit.

    Raises ``cachekit_core.CacheUnavailable`` when Redis could not be reached: this process's
    pages are invalidated and the engine replays the invalidation once Redis is back, but
    other processes may serve the old pages until then (the commit-time repeat only logs)."""
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"tags must be strings, got {type(tag).__name__}")
    _schedule(set(tags), using, raise_errors=True)


def invalidate_model(target: ModelOrInstance, *, using: str | None = DEFAULT_DB_ALIAS) -> None:
    """Invalidate a model's tag (and the tags of models reading its table), or, for an
    instance, those and its row's tags. Raises ``CacheUnavailable`` as ``invalidate_tags``."""
    model = _model(target)
    tags = set(_readers_of(model))
    if isinstance(target, models.Model) and target.pk is not None:
        tags |= _row_tags(model, target.pk)
    _schedule(tags, using, raise_errors=True)


# --------------------------------------------------------------------------- table maps


def _tables(model: type[models.Model]) -> list[str]:
    """Tables a model's rows live in: its own and its multi-table parents'."""
    concrete = model._meta.concrete_model or model
    return [concrete._meta.db_table.lower()] + [
        p._meta.db_table.lower() for p in concrete._meta.get_parent_list()
    ]


@cache
def _table_readers() -> dict[str, frozenset[str]]:
    readers: dict[str, set[str]] = {}
    for model in apps.get_models(include_auto_created=True):
        for table in _tables(model):
            readers.setdefault(table, set()).add(model._meta.label_lower)
    for model in apps.get_models():
        for field in model._meta.local_many_to_many:
            through = field.remote_field.through
            if isinstance(through, type):
                sides = _family(model, readers) | _family(field.related_model, readers)
                readers.setdefault(through._meta.db_table.lower(), set()).update(sides)
    return {table: frozenset(labels - _SKIPPED) for table, labels in readers.items()}


def _family(model: Any, readers: dict[str, set[str]]) -> set[str]:
    if not isinstance(model, type):
        return set()  # an unresolved lazy reference: nothing to read from yet
    return set().union(*(readers.get(t, set()) for t in _tables(model)))


def _readers_of(model: type[models.Model]) -> frozenset[str]:
    table_readers = _table_readers()
    labels = {model._meta.label_lower} - _SKIPPED
    for table in _tables(model):
        labels |= table_readers.get(table, frozenset())
    return frozenset(labels)


def _row_tags(model: type[models.Model], pk: Any) -> set[str]:
    return {f"{label}:{pk}" for label in _readers_of(model)}


def _models_changed(**kwargs: Any) -> None:
    _table_readers.cache_clear()  # a model defined after the first lookup (tests do this)


_local = threading.local()  # m2m clear: the rows read in pre_clear, until post_clear


# --------------------------------------------------------------------------- signals


def _on_save_or_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    if instance.pk is None or sender._meta.label_lower in _SKIPPED:
        return
    # The model tag comes from the SQL hook (the statement itself); the row tag from here.
    _schedule(_row_tags(sender, instance.pk), kwargs.get("using"), raise_errors=False)


def _m2m_field(through: type[models.Model], model: type[models.Model]) -> Any:
    for field in model._meta.many_to_many:
        if field.remote_field.through is through:
            return field
    return None


def _cleared_pks(
    through: type[models.Model], instance: models.Model, other: Any, reverse: bool, using: str
) -> set[Any]:
    """The pks on the other side of ``instance``'s rows in ``through`` (read before a clear)."""
    field = _m2m_field(through, other if reverse else type(instance))
    if field is None:
        return set()
    mine, theirs = field.m2m_field_name(), field.m2m_reverse_field_name()
    if reverse:
        mine, theirs = theirs, mine
    rows = through._base_manager.using(using).filter(**{mine: instance.pk})
    return set(rows.values_list(theirs, flat=True))


def _on_m2m_changed(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    using: str,
    **kwargs: Any,
) -> None:
    pending: dict[tuple[int, type[models.Model]], set[Any]] = _local.__dict__.setdefault(
        "cleared", {}
    )
    if action == "pre_clear":
        pending[id(instance), sender] = _cleared_pks(sender, instance, model, reverse, using)
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if action == "post_clear":
        pk_set = pending.pop((id(instance), sender), set())
    tags = _row_tags(type(instance), instance.pk)
    for pk in pk_set or ():
        tags |= _row_tags(model, pk)
    _schedule(tags, using, raise_errors=False)


# --------------------------------------------------------------------------- the SQL hook


def _sql_hook(execute: Any, sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
    result = execute(sql, params, many, context)
    # After execute(): a statement that failed wrote nothing.
    if isinstance(sql, str):
        tables = written_tables(sql)
        if tables:
            table_readers = _table_readers()
            tags = set().union(*(table_readers.get(t, frozenset()) for t in tables))
            if tags:
                _schedule(tags, context["connection"].alias, raise_errors=False)
    return result


def _install(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    if _sql_hook not in connection.execute_wrappers:
        # First, not last: ``with connection.execute_wrapper(w):`` pops the *last* wrapper on
        # exit, which must stay the user's even if the connection opened inside the block.
        connection.execute_wrappers.insert(0, _sql_hook)


def _on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    _install(connection)


def connect() -> None:
    """Connect the hooks (``CachekitDjangoConfig.ready()`` calls this; calling again is a no-op)."""
    uid = "cachekit_django.invalidation"
    post_save.connect(_on_save_or_delete, dispatch_uid=f"{uid}.save")
    post_delete.connect(_on_save_or_delete, dispatch_uid=f"{uid}.delete")
    m2m_changed.connect(_on_m2m_changed, dispatch_uid=f"{uid}.m2m")
    class_prepared.connect(_models_changed, dispatch_uid=f"{uid}.models")
    connection_created.connect(_on_connection_created, dispatch_uid=f"{uid}.sql")
    for conn in connections.all(initialized_only=True):
        _install(conn)  # connections opened before ready() (rare: a settings-time query)
