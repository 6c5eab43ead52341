"""The version watermark table: the SQL sink writes it in the department's database with the data, the webhook sink
keeps it in a store of its own. One row per entity the holder ever applied a change for; what it means is the
version guard's (``guard``): this module only reads, writes and creates it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine

from connectors.sinks.change import Change, End
from connectors.sinks.guard import Decision, EntityRef, Watermark, refs
from connectors.sinks.sql_dialect import upsert_rows

log = logging.getLogger(__name__)

_KEY_CHUNK = 500
_END_READ = ("ended_by", "ended_type", "ended_at", "ended_record")
_MARK_READ = ("entity_key", "authority_version", "event_id", "superseded_by", "batch_events", *_END_READ)


def _key_type(length: int) -> sa.types.TypeEngine[str]:
    """Entity types and keys compare exactly, as on SQLite and PostgreSQL: MySQL's default collations ignore case
    and trailing spaces, so a change to key ``a1`` would read and overwrite the watermark of ``A1``."""
    exact = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin")
    return sa.String(length).with_variant(exact, "mysql", "mariadb")


def watermark_table(name: str, metadata: sa.MetaData) -> sa.Table:
    """The holder's version watermarks, one row per entity it has ever applied a change for."""
    return sa.Table(
        name,
        metadata,
        sa.Column("entity_type", _key_type(64), primary_key=True),
        sa.Column("entity_key", _key_type(128), primary_key=True),
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


def add_missing_columns(engine: Engine, table: sa.Table) -> None:
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


def create_once(engine: Engine, table: sa.Table) -> None:
    """Create the table unless it exists, also when another worker creates it at the same moment."""
    try:
        table.create(engine, checkfirst=True)
    except (sa.exc.ProgrammingError, sa.exc.IntegrityError, sa.exc.OperationalError):
        if not sa.inspect(engine).has_table(table.name, schema=table.schema):
            raise


def read_watermarks(conn: sa.Connection, marks: sa.Table, changes: Sequence[Change]) -> dict[EntityRef, Watermark]:
    """The stored watermarks of every entity the batch touches, locked (FOR UPDATE) where the database can."""
    out: dict[EntityRef, Watermark] = {}
    c = marks.c
    for entity_type, keys in _key_chunks(ref for change in changes for ref in refs(change)):
        stmt = (
            sa.select(*(c[n] for n in _MARK_READ))
            .where(c.entity_type == entity_type, c.entity_key.in_(keys))
            .order_by(c.entity_key)
            .with_for_update()
        )
        for key, version, event_id, superseded_by, batch, *end in conn.execute(stmt):
            batch_events = tuple(json.loads(batch)) if batch else ()
            out[(entity_type, key)] = Watermark(int(version), event_id, superseded_by, _end(*end), batch_events)
    return out


def _key_chunks(wanted: Iterable[EntityRef]) -> Iterator[tuple[str, list[str]]]:
    """Per entity type, its distinct keys in sorted order (the order rows are locked in), ``_KEY_CHUNK`` at a time."""
    by_type: dict[str, set[str]] = {}
    for entity_type, key in wanted:
        by_type.setdefault(entity_type, set()).add(key)
    for entity_type, keys in by_type.items():
        ordered = sorted(keys)
        for i in range(0, len(ordered), _KEY_CHUNK):
            yield entity_type, ordered[i : i + _KEY_CHUNK]


def apply_times(conn: sa.Connection, marks: sa.Table, decisions: list[Decision]) -> list[Decision]:
    """Repeats of earlier applies get the time their transaction was written. Only repeats (rare) pay this read:
    the watermarks of every batch are read without their times, which cost a parse per row on SQLite."""
    c = marks.c
    times: dict[EntityRef, int] = {}
    repeats = ((d.change.entity_type, d.change.entity_key) for d in decisions if d.repeat)
    for entity_type, keys in _key_chunks(repeats):
        stmt = sa.select(c.entity_key, c.applied_at).where(c.entity_type == entity_type, c.entity_key.in_(keys))
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


def write_watermarks(conn: sa.Connection, marks: sa.Table, changed: Mapping[EntityRef, Watermark]) -> None:
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
