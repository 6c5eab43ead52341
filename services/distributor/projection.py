"""One holder's view of one entity type: the projected schema, its registry subject, and projecting a record.

The projected schema is the change schema with only the granted entity fields, so a field not granted has no
name in the holder's schema and no bytes in its inbox. Subjects follow TopicRecordNameStrategy
(``<inbox topic>-<record full name>``) because one inbox carries several entity types.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro

from onceonly.errors import ConfigError
from onceonly.standard import change_schema, entity_schema, project_change_schema
from services.distributor.agreements import Agreement

Schema = dict[str, Any]

# Which granted fields each citizen restriction flag withholds; identity_protected withholds the whole record.
RESTRICTED_FIELDS: Mapping[str, frozenset[str]] = {"address_secret": frozenset({"address"})}
ENVELOPE_FIELDS = (
    "event_id",
    "event_type",
    "op",
    "entity_type",
    "entity_key",
    "authority",
    "authority_version",
    "valid_from",
    "recorded_at",
    "correction",
    "supersedes_key",
    "legal_basis",
    "restrictions",
    "source",
    "ts_ms",
)


def full_name(schema: Schema) -> str:
    namespace = schema.get("namespace")
    return f"{namespace}.{schema['name']}" if namespace else str(schema["name"])


def inbox_subject(inbox_topic: str, schema: Schema) -> str:
    """TopicRecordNameStrategy: ``inbox.tax-onceonly.change.PersonChange``."""
    return f"{inbox_topic}-{full_name(schema)}"


@lru_cache(maxsize=32)
def _envelope_writer(entity_type: str, root: Path | None) -> Any:
    schema = change_schema(entity_type, root)
    if [f["name"] for f in schema["fields"][-2:]] != ["before", "after"]:
        raise ConfigError("envelope.avsc must end with the fields before and after (the distributor splices them)")
    schema["fields"] = schema["fields"][:-2]
    return fastavro.parse_schema(schema)


def encode_envelope(entity_type: str, change: Mapping[str, Any], root: Path | None = None) -> bytes:
    """Avro bytes of the envelope fields alone: the same for every holder of one change (encoded once)."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _envelope_writer(entity_type, root), change)
    return out.getvalue()


def _tail_writer(schema: Schema) -> Any:
    """A record of just ``before`` and ``after``: Avro writes fields in order, so envelope + tail = the record."""
    fields = [json.loads(json.dumps(f)) for f in schema["fields"][-2:]]
    tail: Schema = {"type": "record", "name": f"{schema['name']}Tail", "namespace": schema.get("namespace")}
    tail["fields"] = fields
    return fastavro.parse_schema(tail)


@dataclass(frozen=True)
class Route:
    """What one agreement sends one holder for one entity type, and where."""

    agreement: Agreement
    entity_type: str
    fields: tuple[str, ...]
    nullable: frozenset[str]
    schema: Schema = field(compare=False, repr=False)
    inbox: str
    subject: str
    tail: Any = field(compare=False, repr=False, default=None)

    @property
    def holder(self) -> str:
        return self.agreement.holder

    @classmethod
    def build(cls, agreement: Agreement, entity_type: str, inbox: str, root: Path | None = None) -> Route:
        fields = agreement.fields(entity_type, root)
        schema = project_change_schema(entity_type, list(fields), root)
        nullable = frozenset(
            f["name"]
            for f in entity_schema(entity_type, root)["fields"]
            if isinstance(f["type"], list) and "null" in f["type"]
        )
        subject = inbox_subject(inbox, schema)
        return cls(agreement, entity_type, fields, nullable, schema, inbox, subject, _tail_writer(schema))

    def encode_body(self, envelope: bytes, record: Mapping[str, Any]) -> bytes:
        """The Avro body of an inbox record from the change's envelope bytes and this holder's before/after."""
        out = io.BytesIO(envelope)
        out.seek(len(envelope))
        fastavro.schemaless_writer(out, self.tail, record)
        return out.getvalue()

    def withheld_by(self, flags: frozenset[str]) -> tuple[frozenset[str], list[str]]:
        """(granted fields to withhold, the flags that withhold them) for a record's restriction flags."""
        hidden: set[str] = set()
        why: list[str] = []
        for flag in sorted(flags):
            covered = RESTRICTED_FIELDS.get(flag, frozenset()) & set(self.fields)
            if covered:
                hidden |= covered
                why.append(flag)
        return frozenset(hidden), why

    def project(self, change: Mapping[str, Any], hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The inbox record: the envelope as it is, ``before``/``after`` cut to the granted fields."""
        record = {name: change.get(name) for name in ENVELOPE_FIELDS if name in change}
        for side in ("before", "after"):
            entity = change.get(side)
            record[side] = None if entity is None else self.project_entity(entity, hidden)
        return record

    def project_entity(self, entity: Mapping[str, Any], hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
        return {name: (None if name in hidden else entity.get(name)) for name in self.fields}
