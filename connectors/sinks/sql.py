"""The SQL sink: a department's own tables, written through SQLAlchemy in the department's own names.

One batch is one transaction: read the watermarks of every entity in the batch (locked where the database can),
decide with the version guard, run the planned bulk statements, write the new watermarks, commit. Data and
watermark commit together, so a crash can never leave one without the other.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from connectors.sinks.base import Outcome, Result, rejected
from connectors.sinks.change import Change, End
from connectors.sinks.config import EndMapping, SqlSinkConfig, TableMapping, describe
from connectors.sinks.errors import MappingError, TransientSinkError
from connectors.sinks.guard import Decision, EntityRef, Watermark, guard, refs
from connectors.sinks.plan import DeletePolicy, plan
from connectors.sinks.sql_dialect import create_engine, is_transient, upsert_rows
from connectors.sinks.sql_steps import Tables, Target
from onceonly.errors import ConfigError

log = logging.getLogger(__name__)

_KEY_CHUNK = 500
_END_READ = ("ended_by", "ended_type", "ended_at", "ended_record")
_MARK_READ = ("entity_key", "authority_version", "event_id", "superseded_by", "batch_events", *_END_READ)
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


def watermark_table(name: str, metadata: sa.MetaData) -> sa.Table:
    """The holder's version watermarks, one row per entity it has ever applied a change for."""
    return sa.Table(
        name,
        metadata,
        sa.Column("entity_type", sa.String(64), primary_key=True),
        sa.Column("entity_key", sa.String(128), primary_key=True),
        sa.Column("authority_version", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("superseded_by", sa.String(128), nullable=True),
        sa.Column("ended_by", sa.String(64), nullable=True),
        *_end_columns(),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
        # Other events this transaction applied to the entity before event_id (JSON list; NULL when none, the
        # common case): a redelivered batch is then recognised as applied, change by change (see ``guard``).
        sa.Column("batch_events", sa.Text, nullable=True),
    )


def _end_columns() -> list[sa.Column[Any]]:
    """What ended the record (a death), so a change it overtook can still land, kept ended (see ``guard``)."""
    return [
        sa.Column("ended_type", sa.String(64), nullable=True),
        sa.Column("ended_at", sa.BigInteger, nullable=True),
        sa.Column("ended_record", sa.Text, nullable=True),
    ]


def _add_missing_columns(engine: Engine, table: sa.Table) -> None:
    """Bring a watermark table made by an older release up to date (new columns are all nullable)."""
    have = {c["name"] for c in sa.inspect(engine).get_columns(table.name, schema=table.schema)}
    missing = [c for c in table.columns if c.name not in have]
    if not missing:
        return
    quote = engine.dialect.identifier_preparer
    with engine.begin() as conn:
        for column in missing:
            kind = column.type.compile(dialect=engine.dialect)
            conn.exec_driver_sql(
                f"ALTER TABLE {quote.format_table(table)} ADD COLUMN {quote.quote(column.name)} {kind}"
            )
    log.info("watermark table %s: added %s", table.fullname, ", ".join(c.name for c in missing))


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
        engine = create_engine(self.config.url, self.config.connect_timeout)
        metadata = sa.MetaData()
        try:
            with engine.connect() as conn:
                for entity_type, mapping in self.config.table_mappings().items():
                    table = _reflect(conn, metadata, mapping, self.delete_policy)
                    self._tables.targets[entity_type] = Target(mapping, table)
            _check_ends(self._tables)
            marks = watermark_table(self.config.watermark_table, metadata)
            _create_once(engine, marks)
            _add_missing_columns(engine, marks)
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
                stored = _read_watermarks(conn, marks, [c for _, c in admitted])
                decisions, changed = guard([c for _, c in admitted], stored)
                if any(d.repeat for d in decisions):
                    decisions = _apply_times(conn, marks, decisions)
                for step in plan([d.change for d in decisions if d.verdict == "apply"], self.delete_policy):
                    self._tables.run(conn, step)
                _write_watermarks(conn, marks, changed)
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


def _create_once(engine: Engine, table: sa.Table) -> None:
    """Create the table unless it exists, also when another worker creates it at the same moment."""
    try:
        table.create(engine, checkfirst=True)
    except (sa.exc.ProgrammingError, sa.exc.IntegrityError, sa.exc.OperationalError):
        if not sa.inspect(engine).has_table(table.name, schema=table.schema):
            raise


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


def _read_watermarks(conn: sa.Connection, marks: sa.Table, changes: Sequence[Change]) -> dict[EntityRef, Watermark]:
    """The stored watermarks of every entity the batch touches, locked (FOR UPDATE) where the database can."""
    wanted: dict[str, set[str]] = {}
    for change in changes:
        for entity_type, key in refs(change):
            wanted.setdefault(entity_type, set()).add(key)
    out: dict[EntityRef, Watermark] = {}
    c = marks.c
    for entity_type, keys in wanted.items():
        ordered = sorted(keys)
        for i in range(0, len(ordered), _KEY_CHUNK):
            stmt = (
                sa.select(*(c[n] for n in _MARK_READ))
                .where(c.entity_type == entity_type, c.entity_key.in_(ordered[i : i + _KEY_CHUNK]))
                .order_by(c.entity_key)
                .with_for_update()
            )
            for key, version, event_id, superseded_by, batch, *end in conn.execute(stmt):
                batch_events = tuple(json.loads(batch)) if batch else ()
                out[(entity_type, key)] = Watermark(int(version), event_id, superseded_by, _end(*end), batch_events)
    return out


def _apply_times(conn: sa.Connection, marks: sa.Table, decisions: list[Decision]) -> list[Decision]:
    """Repeats of earlier applies get the time their transaction was written. Only repeats (rare) pay this read:
    the watermarks of every batch are read without their times, which cost a parse per row on SQLite."""
    c = marks.c
    wanted: dict[str, set[str]] = {}
    for d in decisions:
        if d.repeat:
            wanted.setdefault(d.change.entity_type, set()).add(d.change.entity_key)
    times: dict[EntityRef, int] = {}
    for entity_type, keys in wanted.items():
        ordered = sorted(keys)
        for i in range(0, len(ordered), _KEY_CHUNK):
            stmt = sa.select(c.entity_key, c.applied_at).where(
                c.entity_type == entity_type, c.entity_key.in_(ordered[i : i + _KEY_CHUNK])
            )
            times.update({(entity_type, k): int(at.timestamp() * 1000) for k, at in conn.execute(stmt) if at})
    return [
        replace(d, applied_at=times.get((d.change.entity_type, d.change.entity_key))) if d.repeat else d
        for d in decisions
    ]


def _end(ended_by: str | None, ended_type: str | None, ended_at: int | None, record: str | None) -> End | None:
    """The stored end; one written before its time was kept takes only identifier upgrades (time unknown)."""
    if ended_by is None:
        return None
    at = -1 if ended_at is None else int(ended_at)
    return End(ended_by, ended_type or "", at, json.loads(record) if record else None)


def _json(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str, sort_keys=True)


def _write_watermarks(conn: sa.Connection, marks: sa.Table, changed: Mapping[EntityRef, Watermark]) -> None:
    now = datetime.now().astimezone()
    rows = [
        {
            "entity_type": entity_type,
            "entity_key": key,
            "authority_version": w.version,
            "event_id": w.event_id,
            "superseded_by": w.superseded_by,
            "ended_by": w.ended_by,
            "ended_type": w.end.entity_type if w.end else None,
            "ended_at": w.end.recorded_at if w.end else None,
            "ended_record": _json(w.end.record) if w.end and w.end.record is not None else None,
            "applied_at": now,
            "batch_events": json.dumps(w.batch_events) if w.batch_events else None,
        }
        for (entity_type, key), w in changed.items()
    ]
    upsert_rows(conn, marks, ["entity_type", "entity_key"], rows)
