"""What each holder's store must hold: the authorities' changes replayed through the holder's agreement.

The replay follows the distributor's published rules (interest, district condition before or after a change,
field projection, identifier re-keying, deaths ending the person record), so a difference found here is a
change that did not land, not a difference of opinion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from connectors.sinks.config import EndMapping, SqlSinkConfig
from onceonly.demo.holders import DELETED_COLUMN, KEY_FIELDS, holder_agreement, subscriber_config
from services.distributor import Agreement, Agreements

Row = dict[str, Any]
Tables = dict[str, dict[str, Row]]  # table -> key -> column -> value


def _in_condition(agreement: Agreement, change: Mapping[str, Any]) -> bool:
    condition = agreement.condition
    return condition is None or condition.matches(change.get("after")) or condition.matches(change.get("before"))


def expected_tables(
    agreement: Agreement, config: SqlSinkConfig, changes: Iterable[Mapping[str, Any]], interest: set[str]
) -> Tables:
    """Table -> key -> expected columns for one holder after ``changes`` (in publish order)."""
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


def _fields(config: SqlSinkConfig) -> dict[str, dict[str, str]]:
    """Table -> column -> the entity field it holds (to name both in a difference)."""
    out: dict[str, dict[str, str]] = {}
    for entity_type, m in config.table_mappings().items():
        out[m.table] = {m.key_column: KEY_FIELDS.get(entity_type, m.key_column), **{c: f for f, c in m.columns.items()}}
    for end in config.end_mappings().values():
        out[config.table_mappings()[end.ends].table].update({c: f for f, c in end.columns.items()})
    return out


def _same(expected: Any, got: Any) -> bool:
    """Equal and of the same type: ``None`` is not ``False``, ``1`` is not ``"1"`` or ``True``."""
    return type(expected) is type(got) and bool(expected == got)


def differences(
    expected: Tables, url: str, limit: int = 5, fields: Mapping[str, Mapping[str, str]] | None = None
) -> list[str]:
    """Rows and fields where the store differs from what it must hold (at most ``limit`` described).

    An expected value is first put through the SQL sink's own conversion for the column's type (``coerce``: a list
    becomes JSON text, a date in a text column its ISO form), then compared with what the store returns, type and
    value. ``fields`` (table -> column -> field) names the field beside the department's column.
    """
    import sqlalchemy as sa

    from connectors.sinks.sql_steps import coerce

    problems: list[str] = []
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            for table, rows in expected.items():
                t = sa.Table(table, sa.MetaData(), autoload_with=conn)
                key_column = next(c.name for c in t.primary_key.columns)
                actual = {str(r._mapping[key_column]): dict(r._mapping) for r in conn.execute(sa.select(t))}
                named = (fields or {}).get(table, {})
                for key in sorted(set(actual) - set(rows))[:limit]:
                    problems.append(f"{table}: unexpected row {key}")
                for key, row in rows.items():
                    got = actual.get(key)
                    if got is None:
                        problems.append(f"{table}: missing row {key}")
                    else:
                        want = {c: coerce(v, t.c[c].type) if c in t.c else v for c, v in row.items()}
                        wrong = [c for c, v in want.items() if not _same(v, got.get(c))]
                        if wrong:
                            c = wrong[0]
                            field = f" ({named[c]})" if c in named and named[c] != c else ""
                            problems.append(f"{table} {key}: {c}{field} is {got.get(c)!r}, expected {want[c]!r}")
                    if len(problems) >= limit:
                        return problems
    finally:
        engine.dispose()
    return problems


def verify(
    agreements: Agreements,
    stores: Mapping[str, str],
    changes: Sequence[Mapping[str, Any]],
    interest: set[str],
    limit: int = 5,
) -> dict[str, list[str]]:
    """Per holder (``stores``: holder -> its database), what differs from its entitlement; an empty list: converged."""
    out: dict[str, list[str]] = {}
    for holder, url in stores.items():
        agreement = holder_agreement(agreements, holder)
        config = subscriber_config(agreement, url).sink
        assert isinstance(config, SqlSinkConfig)  # the demo's holders are SQL stores
        expected = expected_tables(agreement, config, changes, interest)
        out[holder] = differences(expected, url, limit, _fields(config))
    return out
