"""A change event as a sink sees it: the envelope fields of a decoded record, typed.

Sinks never see Avro or Kafka; they get ``Change`` values in the order they must be applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from connectors.sinks.errors import MalformedChange

Op = Literal["c", "u", "d", "r"]
OPS: frozenset[str] = frozenset({"c", "u", "d", "r"})


@dataclass(frozen=True, slots=True)
class End:
    """What ended a record (a death ends a person), kept with the record's watermark.

    Changes travel on separate topics, so a death can reach a holder before a person change recorded earlier.
    Keeping the end's time and record lets that change still land, with the record kept ended.
    """

    event_id: str
    entity_type: str
    recorded_at: int
    record: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One fact as recorded by its authority (``before``/``after`` hold only the fields the holder was granted)."""

    event_id: str
    event_type: str
    op: Op
    entity_type: str
    entity_key: str
    authority: str
    authority_version: int
    recorded_at: int
    correction: bool = False
    supersedes_key: str | None = None
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    restrictions: Any = None
    ends: tuple[str, str] | None = None
    """``(entity_type, key)`` of the record this change ends (a death ends a person); set by a sink's mapping."""
    kept_end: End | None = None
    """Set by the version guard: the record is ended, and this change lands with the end re-applied."""

    @property
    def is_identifier_upgrade(self) -> bool:
        """The entity got a new key (15 to 18 digits): the holder re-keys its record instead of adding one."""
        return bool(self.supersedes_key) and self.supersedes_key != self.entity_key and self.op != "d"

    @property
    def is_delete(self) -> bool:
        return self.op == "d"

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Change:
        """Read the envelope of a decoded record; a record that is not a usable change raises ``MalformedChange``."""
        try:
            op = str(record["op"])
            change = cls(
                event_id=_text(record, "event_id"),
                event_type=str(record.get("event_type") or ""),
                op=cast(Op, op),
                entity_type=_text(record, "entity_type"),
                entity_key=_text(record, "entity_key"),
                authority=str(record.get("authority") or ""),
                authority_version=int(record["authority_version"]),
                recorded_at=_millis(record.get("recorded_at")),
                correction=bool(record.get("correction") or False),
                supersedes_key=record.get("supersedes_key") or None,
                before=record.get("before"),
                after=record.get("after"),
                restrictions=record.get("restrictions"),
            )
        except KeyError as e:
            raise MalformedChange(f"the record has no {e.args[0]!r} field") from e
        except (TypeError, ValueError) as e:
            raise MalformedChange(f"the record's envelope is not usable: {e}") from e
        if op not in OPS:
            raise MalformedChange(f"unknown op {op!r} (expected one of c, u, d, r)")
        if op != "d" and change.after is None:
            raise MalformedChange(f"op {op!r} without an 'after' record")
        return change


def _text(record: Mapping[str, Any], name: str) -> str:
    value = record[name]
    if not isinstance(value, str) or not value:
        raise MalformedChange(f"{name} must be a non-empty string, got {value!r}")
    return value


def _millis(value: Any) -> int:
    """``recorded_at`` as epoch milliseconds, whether the decoder gave a number or a datetime."""
    if value is None:
        return 0
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)
