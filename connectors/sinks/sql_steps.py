"""The statements of one planned step, in the department's own table and column names.

Every step touches each row at most once (see ``plan``), so rows that take the same columns go out as one
``executemany``; only an identifier upgrade, which reads before it writes, is a statement per change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Any

import sqlalchemy as sa

from connectors.sinks.change import Change
from connectors.sinks.config import EndMapping, TableMapping
from connectors.sinks.plan import Step
from connectors.sinks.sql_dialect import upsert_rows


@dataclass
class Target:
    """A table mapping bound to its reflected table."""

    mapping: TableMapping
    table: sa.Table

    @property
    def key(self) -> sa.Column[Any]:
        return self.table.c[self.mapping.key_column]

    @cached_property
    def types(self) -> dict[str, sa.types.TypeEngine[Any]]:
        """Column -> its type, looked up once (``table.c[name]`` per value was a fifth of the sink's time)."""
        return {c.key: c.type for c in self.table.c}


@dataclass
class Tables:
    """Where each entity type's changes land: its own table, or (deaths) the table of the record it ends."""

    targets: dict[str, Target]
    ends: dict[str, EndMapping]

    def of(self, change: Change) -> Target:
        return self.targets[change.ends[0] if change.ends else change.entity_type]

    def run(self, conn: sa.Connection, step: Step) -> None:
        by_table: dict[int, tuple[Target, list[Change]]] = {}
        for change in step.changes:
            target = self.of(change)
            by_table.setdefault(id(target), (target, []))[1].append(change)
        for target, changes in by_table.values():
            if step.action == "upsert":
                _upsert(conn, target, [(c, self._row(target, c)) for c in changes])
            elif step.action == "rekey":
                for change in changes:
                    _rekey(conn, target, change, self._row(target, change))
            elif step.action in ("delete", "purge"):
                keys = [k for c in changes for k in _keys(step, c)]
                stmt = sa.delete(target.table).where(target.key == sa.bindparam("_key"))
                conn.execute(stmt, [{"_key": k} for k in keys])
            else:
                _update(conn, target, ((_key(c), self._values(step, target, c)) for c in changes))

    def _row(self, target: Target, change: Change) -> dict[str, Any]:
        """The columns an upsert or re-key writes; a record a death overtook keeps the death's columns."""
        row = row_values(target, change)
        if change.kept_end is not None:
            row |= self._ended(target, change.kept_end.entity_type, change.kept_end.record)
        return row

    def _values(self, step: Step, target: Target, change: Change) -> dict[str, Any]:
        """What ``mark`` (a delete or a death) or ``revive`` (a death retracted) writes to the row."""
        m = target.mapping
        if change.ends is None:
            return {_marked(m): m.deleted_value, **_meta(m, change)}
        values: dict[str, Any] = {m.event_id_column: change.event_id} if m.event_id_column else {}
        if step.action == "revive":
            if m.deleted_column and m.active_value is not None:
                values[m.deleted_column] = m.active_value
            return values | dict.fromkeys(self.ends[change.entity_type].columns.values())
        return values | self._ended(target, change.entity_type, change.after)

    def _ended(self, target: Target, entity_type: str, record: Mapping[str, Any] | None) -> dict[str, Any]:
        """The columns an end (a death) writes on the record it ends: its own fields and the ended status."""
        m, end = target.mapping, self.ends.get(entity_type)
        if end is None:  # the end's entity type is no longer mapped: the record still stays ended
            return {_marked(m): m.deleted_value}
        fields = {col: coerce((record or {}).get(f), target.types[col]) for f, col in end.columns.items()}
        return fields | {_marked(m): m.deleted_value if end.deleted_value is None else end.deleted_value}


def _key(change: Change) -> str:
    return change.ends[1] if change.ends else change.entity_key


def _keys(step: Step, change: Change) -> list[str]:
    """The rows a delete removes; a purge (a change landing on a deleted, ended record) removes both upgrade keys."""
    if step.action == "purge" and change.supersedes_key:
        return [change.entity_key, change.supersedes_key]
    return [_key(change)]


def _marked(m: TableMapping) -> str:
    if m.deleted_column is None:  # refused at open() for the mark policy; kept for the type checker
        raise ValueError(f"{m.table} has no deleted_column for the 'mark' delete policy")
    return m.deleted_column


def _upsert(conn: sa.Connection, target: Target, changes: list[tuple[Change, dict[str, Any]]]) -> None:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for change, values in changes:
        row = {target.mapping.key_column: change.entity_key, **values}
        groups.setdefault(tuple(row), []).append(row)
    for rows in groups.values():
        upsert_rows(conn, target.table, [target.mapping.key_column], rows)


def _update(conn: sa.Connection, target: Target, rows: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """UPDATE by key; rows writing the same columns share one statement. A missing row is no error."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for key, values in rows:
        if values:
            groups.setdefault(tuple(values), []).append({"_key": key, **{f"_v_{c}": v for c, v in values.items()}})
    for columns, params in groups.items():
        stmt = (
            sa.update(target.table)
            .where(target.key == sa.bindparam("_key"))
            .values({c: sa.bindparam(f"_v_{c}") for c in columns})
        )
        conn.execute(stmt, params)


def _rekey(conn: sa.Connection, target: Target, change: Change, values: dict[str, Any]) -> None:
    """The 15-digit record becomes the 18-digit one; if both exist, the new one wins and the old goes."""
    old, new, key = change.supersedes_key, change.entity_key, target.mapping.key_column
    new_exists = conn.execute(sa.select(target.key).where(target.key == new)).first() is not None
    if not new_exists:
        moved = conn.execute(sa.update(target.table).where(target.key == old).values({key: new, **values})).rowcount
        if moved:
            return
    upsert_rows(conn, target.table, [key], [{key: new, **values}])
    conn.execute(sa.delete(target.table).where(target.key == old))


def row_values(target: Target, change: Change) -> dict[str, Any]:
    """The department's columns for the fields this change carries (fields not granted are left untouched)."""
    m = target.mapping
    after: Mapping[str, Any] = change.after or {}
    types = target.types
    row = {col: coerce(after[field], types[col]) for field, col in m.columns.items() if field in after}
    if m.deleted_column and m.active_value is not None:
        row[m.deleted_column] = m.active_value
    row.update(_meta(m, change))
    return row


def _meta(m: TableMapping, change: Change) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if m.version_column:
        meta[m.version_column] = change.authority_version
    if m.event_id_column:
        meta[m.event_id_column] = change.event_id
    if m.correction_column:
        meta[m.correction_column] = change.correction
    return meta


def coerce(value: Any, column_type: sa.types.TypeEngine[Any]) -> Any:
    """Fit a decoded Avro value to the department's column (dates as text, text as dates, records as JSON)."""
    if value is None:
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    if isinstance(column_type, sa.DateTime):
        return datetime.fromisoformat(value) if isinstance(value, str) else value
    if isinstance(column_type, sa.Date):
        if isinstance(value, datetime):
            return value.date()
        return date.fromisoformat(value) if isinstance(value, str) else value
    if isinstance(column_type, sa.String) and isinstance(value, date | datetime):
        return value.isoformat()
    return value
