"""What each holder's store must hold: the authorities' changes replayed through the holder's agreement.

The replay follows the distributor's published rules (interest, district condition before or after a change,
field projection, identifier re-keying, deaths ending the person record), so a difference found here is a
change that did not land, not a difference of opinion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from connectors.sinks.config import EndMapping, SqlSinkConfig
from services.distributor import Agreement

Row = dict[str, Any]
Tables = dict[str, dict[str, Row]]  # table -> key -> column -> value


def _in_condition(agreement: Agreement, change: Mapping[str, Any]) -> bool:
    condition = agreement.condition
    return condition is None or condition.matches(change.get("after")) or condition.matches(change.get("before"))


def expected_tables(
    agreement: Agreement, config: SqlSinkConfig, changes: Iterable[Mapping[str, Any]], interest: set[str]
) -> Tables:
    """Table -> key -> expected columns for one holder after ``changes`` (in publish order)."""
    from onceonly.demo.holders import DELETED_COLUMN

    interest = set(interest)  # an identifier upgrade carries interest over to the new key, as the distributor does
    tables: Tables = {m.table: {} for m in config.table_mappings().values()}
    mappings = config.table_mappings()
    ends = config.end_mappings()
    for change in changes:
        entity_type = str(change["entity_type"])
        if entity_type not in agreement.grants:
            continue
        key, old = str(change["entity_key"]), change.get("supersedes_key")
        if agreement.interest == "interest" and key not in interest and old not in interest:
            continue
        if not _in_condition(agreement, change):
            continue
        if old and old in interest:
            interest.add(key)
        if isinstance(end := ends.get(entity_type), EndMapping):
            target = mappings[end.ends]
            row = tables[target.table].get(key)
            if row is not None:
                row[DELETED_COLUMN] = change["op"] != "d"
                row.update({c: (change["after"] or {}).get(f) for f, c in end.columns.items()})
            continue
        m = mappings[entity_type]
        rows = tables[m.table]
        if old and old in rows:
            rows[key] = rows.pop(old)
        if change["op"] == "d":
            if key in rows:
                rows[key][DELETED_COLUMN] = True
            continue
        after = change["after"] or {}
        row = rows.setdefault(key, {})
        row[m.key_column] = key
        row.update({c: after.get(f) for f, c in m.columns.items()})
        row.setdefault(DELETED_COLUMN, False)
    return tables


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | dict) and isinstance(b, str):  # a JSON column read back without its type (SQLite)
        try:
            b = json.loads(b)
        except ValueError:
            return False
    if a is None or b is None:
        return a is b or (a in (None, False) and b in (None, False))
    return bool(a == b) or str(a) == str(b)


def differences(expected: Tables, url: str, limit: int = 5) -> list[str]:
    """Rows and fields where the store differs from what it must hold (at most ``limit`` described)."""
    import sqlalchemy as sa

    problems: list[str] = []
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            for table, rows in expected.items():
                t = sa.Table(table, sa.MetaData(), autoload_with=conn)
                key_column = next(c.name for c in t.primary_key.columns)
                actual = {str(r._mapping[key_column]): dict(r._mapping) for r in conn.execute(sa.select(t))}
                for key in sorted(set(actual) - set(rows))[:limit]:
                    problems.append(f"{table}: unexpected row {key}")
                for key, row in rows.items():
                    got = actual.get(key)
                    if got is None:
                        problems.append(f"{table}: missing row {key}")
                    else:
                        wrong = [c for c, v in row.items() if not _same(v, got.get(c))]
                        if wrong:
                            c = wrong[0]
                            problems.append(f"{table} {key}: {c} is {got.get(c)!r}, expected {row[c]!r}")
                    if len(problems) >= limit:
                        return problems
    finally:
        engine.dispose()
    return problems
