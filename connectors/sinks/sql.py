"""The SQL sink: a department's own tables, written through SQLAlchemy in the department's own names.

One batch is one transaction: read the watermarks of every entity in the batch (locked where the database can),
decide with the version guard, run the planned bulk statements, write the new watermarks, commit. Data and
watermark commit together, so a crash can never leave one without the other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from connectors.sinks.base import Outcome, Result, rejected
from connectors.sinks.change import Change
from connectors.sinks.config import EndMapping, SqlSinkConfig, TableMapping, describe
from connectors.sinks.errors import MappingError, TransientSinkError
from connectors.sinks.guard import guard
from connectors.sinks.plan import DeletePolicy, plan
from connectors.sinks.sql_dialect import engine_or_config_error, is_transient
from connectors.sinks.sql_steps import Tables, Target
from connectors.sinks.watermarks import (
    add_missing_columns,
    apply_times,
    create_once,
    read_watermarks,
    watermark_table,
    write_watermarks,
)
from onceonly.errors import ConfigError

log = logging.getLogger(__name__)

_VERDICT_OUTCOME: dict[str, Outcome] = {
    "apply": "applied",
    "skipped_duplicate": "skipped_duplicate",
    "skipped_stale": "skipped_stale",
}


class _RecordError(Exception):
    """A database error caused by the data of the batch (not the store); carries the original."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class SqlSink:
    """Applies changes to SQLite, PostgreSQL or MySQL, idempotently, in order, many per transaction."""

    def __init__(self, config: SqlSinkConfig, *, delete_policy: DeletePolicy = "mark") -> None:
        self.config = config
        self.delete_policy = delete_policy
        self._engine: Engine | None = None
        self._tables = Tables({}, config.end_mappings())
        self._marks: sa.Table | None = None

    def __repr__(self) -> str:
        return f"SqlSink({describe(self.config)})"

    def open(self) -> None:
        """Reflect the department's tables, check the mapping against them, create the watermark table."""
        engine = engine_or_config_error(self.config.url, self.config.connect_timeout, describe(self.config))
        metadata = sa.MetaData()
        try:
            with engine.connect() as conn:
                for entity_type, mapping in self.config.table_mappings().items():
                    table = _reflect(conn, metadata, mapping, self.delete_policy)
                    self._tables.targets[entity_type] = Target(mapping, table)
            _check_ends(self._tables)
            marks = watermark_table(self.config.watermark_table, metadata)
            create_once(engine, marks)
            add_missing_columns(engine, marks)
        except sa.exc.SQLAlchemyError as e:
            engine.dispose()
            if is_transient(e):
                raise TransientSinkError(f"{describe(self.config)} is not reachable: {e.__cause__ or e}") from e
            raise ConfigError(f"{describe(self.config)}: {e.__cause__ or e}") from e
        except ConfigError:
            engine.dispose()
            raise
        self._engine, self._marks = engine, marks

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def apply(self, changes: Sequence[Change], stop: threading.Event | None = None) -> list[Result]:
        """Apply a batch in one transaction; if one record breaks it, apply one by one to dead-letter only that one.

        ``stop`` is not consulted: one transaction is bounded by the connect and lock timeouts.
        """
        if not changes:
            return []
        try:
            return self._transaction(changes)
        except _RecordError as e:
            if len(changes) == 1:
                return [rejected(changes[0], e.cause)]
            log.info("a record in a batch of %d was refused (%s); applying one by one", len(changes), e.cause)
        results: list[Result] = []
        for change in changes:
            try:
                results.extend(self._transaction([change]))
            except _RecordError as e:
                results.append(rejected(change, e.cause))
            except TransientSinkError as e:
                raise TransientSinkError(str(e), completed=results) from e
        return results

    def _transaction(self, changes: Sequence[Change]) -> list[Result]:
        engine, marks = self._require_open()
        results: list[Result | None] = [None] * len(changes)
        admitted: list[tuple[int, Change]] = []
        for i, change in enumerate(changes):
            try:
                admitted.append((i, self._resolve(change)))
            except MappingError as e:
                results[i] = rejected(change, e)
        try:
            with engine.begin() as conn:
                stored = read_watermarks(conn, marks, [c for _, c in admitted])
                decisions, changed = guard([c for _, c in admitted], stored)
                if any(d.repeat for d in decisions):
                    decisions = apply_times(conn, marks, decisions)
                for step in plan([d.change for d in decisions if d.verdict == "apply"], self.delete_policy):
                    self._tables.run(conn, step)
                write_watermarks(conn, marks, changed)
        except (sa.exc.SQLAlchemyError, OSError) as e:
            if is_transient(e):
                raise TransientSinkError(f"{describe(self.config)}: {e.__cause__ or e}") from e
            raise _RecordError(e.__cause__ or e) from e
        except (TypeError, ValueError) as e:
            raise _RecordError(e) from e
        for (i, _), d in zip(admitted, decisions, strict=True):
            results[i] = Result(
                changes[i], _VERDICT_OUTCOME[d.verdict], d.reason, repeat=d.repeat, applied_at=d.applied_at
            )
        return [r for r in results if r is not None]

    def _resolve(self, change: Change) -> Change:
        """The change with the record it ends (a death) filled in; a change with no place in the mapping is refused."""
        if change.entity_type in self._tables.targets:
            return change
        end = self._tables.ends.get(change.entity_type)
        if end is None:
            known = ", ".join(sorted(self.config.tables))
            raise MappingError(f"no table mapped for entity type {change.entity_type!r} (mapped: {known})")
        return replace(change, ends=(end.ends, _ended_key(change, end)))

    def _require_open(self) -> tuple[Engine, sa.Table]:
        if self._engine is None or self._marks is None:
            raise RuntimeError("SqlSink.open() was not called")
        return self._engine, self._marks


def _ended_key(change: Change, end: EndMapping) -> str:
    if end.key_field is None:
        return change.entity_key
    record = change.after if change.after is not None else change.before
    value = (record or {}).get(end.key_field)
    if not isinstance(value, str) or not value:
        raise MappingError(f"{change.entity_type} record has no {end.key_field!r} naming the {end.ends} it ends")
    return value


def _reflect(conn: sa.Connection, metadata: sa.MetaData, m: TableMapping, delete_policy: DeletePolicy) -> sa.Table:
    where = f"{m.db_schema}.{m.table}" if m.db_schema else m.table
    try:
        table = sa.Table(m.table, metadata, schema=m.db_schema, autoload_with=conn)
    except sa.exc.NoSuchTableError as e:
        raise ConfigError(f"table {where} does not exist", hint="departments own their tables: create it") from e
    missing = [c for c in m.all_columns() if c not in table.c]
    if missing:
        raise ConfigError(f"table {where} has no column {', '.join(missing)}")
    if not _is_unique(conn, table, m.key_column):
        raise ConfigError(f"{where}.{m.key_column} holds the entity key but is neither the primary key nor unique")
    if delete_policy == "mark" and m.deleted_column is None:
        raise ConfigError(f"delete policy 'mark' needs deleted_column in the mapping of {where}")
    return table


def _check_ends(tables: Tables) -> None:
    for entity_type, end in tables.ends.items():
        table = tables.targets[end.ends].table
        missing = [c for c in end.columns.values() if c not in table.c]
        if missing:
            raise ConfigError(f"{entity_type} writes {', '.join(missing)}, which table {table.name} does not have")


def _is_unique(conn: sa.Connection, table: sa.Table, column: str) -> bool:
    if [c.name for c in table.primary_key.columns] == [column]:
        return True
    inspector = sa.inspect(conn)
    uniques = inspector.get_unique_constraints(table.name, schema=table.schema)
    indexes = inspector.get_indexes(table.name, schema=table.schema)
    return any(u["column_names"] == [column] for u in uniques) or any(
        i.get("unique") and i["column_names"] == [column] for i in indexes
    )
