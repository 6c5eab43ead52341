"""Rules of the data standard that Avro types cannot say: identifier forms, check characters, dates, envelope sense.

One place, called by every publishing path (SDK, sources, gateway) before a change is sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from onceonly.standard.errors import RecordInvalid
from onceonly.standard.identity import resident_id_problem, uscc_problem

OPS = ("c", "u", "d", "r")
RESTRICTIONS = frozenset({"address_secret", "identity_protected", "no_commercial_use"})
_ID_FIELDS = ("id_number", "_id_number")


def _date_problem(value: Any) -> str | None:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        if value.year < 1890 or value > date.today():
            return f"{value.isoformat()} is not a plausible past date"
        return None
    if isinstance(value, int):
        return None  # days since epoch, as Avro's date; fastavro checks the type
    return f"expected a date, got {type(value).__name__}"


def _field_rule(name: str) -> Callable[[Any], str | None] | None:
    if name.endswith(_ID_FIELDS):
        return lambda v: resident_id_problem(v) if isinstance(v, str) else None
    if name == "uscc":
        return lambda v: uscc_problem(v) if isinstance(v, str) else None
    if name in ("birth_date", "date_of_death"):
        return _date_problem
    return None


def entity_problems(entity: Mapping[str, Any], prefix: str = "") -> list[RecordInvalid]:
    """Every data-standard problem of one entity record (ID numbers, credit codes, dates)."""
    problems: list[RecordInvalid] = []
    for name, value in entity.items():
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        rule = _field_rule(name.removesuffix("s")) if isinstance(value, list) else _field_rule(name)
        if rule is None:
            continue
        for v in values:
            if problem := rule(v):
                problems.append(RecordInvalid(f"{prefix}{name}", problem))
    return problems


def change_problems(record: Mapping[str, Any]) -> list[RecordInvalid]:
    """Every problem of a change envelope and its entity records; empty when the change may be published."""
    problems: list[RecordInvalid] = []
    op = record.get("op")
    if op not in OPS:
        problems.append(RecordInvalid("op", f"{op!r} is not one of {', '.join(OPS)}"))
    if op in ("c", "u", "r") and record.get("after") is None:
        problems.append(RecordInvalid("after", f"op {op!r} needs the entity after the change"))
    for name in ("entity_type", "entity_key", "authority", "event_type"):
        if not record.get(name):
            problems.append(RecordInvalid(name, "must not be empty"))
    version = record.get("authority_version")
    if not isinstance(version, int) or version < 1:
        problems.append(RecordInvalid("authority_version", f"must be a positive integer, got {version!r}"))
    try:
        uuid.UUID(str(record.get("event_id")))
    except ValueError:
        problems.append(RecordInvalid("event_id", f"{record.get('event_id')!r} is not a UUID"))
    if unknown := sorted(set(record.get("restrictions") or ()) - RESTRICTIONS):
        problems.append(RecordInvalid("restrictions", f"unknown flag(s) {', '.join(unknown)}"))
    supersedes = record.get("supersedes_key")
    if supersedes and supersedes == record.get("entity_key"):
        problems.append(RecordInvalid("supersedes_key", "equals entity_key: an upgrade must name the old key"))
    for side in ("before", "after"):
        entity = record.get(side)
        if isinstance(entity, Mapping):
            problems.extend(entity_problems(entity, f"{side}."))
    return problems


def check_change(record: Mapping[str, Any]) -> None:
    """Raise the first problem of ``change_problems`` (the one a caller fixes first)."""
    if problems := change_problems(record):
        raise problems[0]
