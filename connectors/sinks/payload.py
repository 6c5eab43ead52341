"""A change as plain JSON-able data for holders outside a database (webhooks, files)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connectors.sinks.change import Change
from connectors.sinks.plan import DeletePolicy, action_for

ENVELOPE_COLUMNS = (
    "event_id",
    "event_type",
    "op",
    "entity_type",
    "entity_key",
    "supersedes_key",
    "authority",
    "authority_version",
    "recorded_at",
    "correction",
)


def rename(record: Mapping[str, Any] | None, fields: Mapping[str, str] | None) -> dict[str, Any] | None:
    """Keep and rename the mapped fields; without a mapping, every field as it is."""
    if record is None:
        return None
    if not fields:
        return dict(record)
    return {name: record[field] for field, name in fields.items() if field in record}


def envelope(change: Change) -> dict[str, Any]:
    return {name: getattr(change, name) for name in ENVELOPE_COLUMNS}


def webhook_body(change: Change, delete_policy: DeletePolicy, fields: Mapping[str, str] | None) -> dict[str, Any]:
    """What a department API receives: the envelope, what to do (by the department's policy) and the data."""
    return {
        **envelope(change),
        "action": action_for(change, delete_policy),
        "data": rename(change.after, fields),
        "before": rename(change.before, fields),
    }


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
