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
def _envelope_writer(entity_type: str, root: Path | None) -> tuple[Any, dict[str, str]]:
    schema = change_schema(entity_type, root)
    if [f["name"] for f in schema["fields"][-2:]] != ["before", "after"]:
        raise ConfigError("envelope.avsc must end with the fields before and after (the distributor splices them)")
    schema["fields"] = schema["fields"][:-2]
    parsed = fastavro.parse_schema(schema)
    return parsed, _record_unions(parsed)


def _record_unions(parsed: Any) -> dict[str, str]:
    """Field -> record name, for fields whose type is a union of null and one record (``source``)."""
    out = {}
    for f in parsed["fields"]:
        branches = f["type"] if isinstance(f["type"], list) else []
        named = [b for b in branches if isinstance(b, dict) and b.get("type") == "record"]
        if len(named) == 1 and len(branches) == 2 and "null" in branches:
            out[f["name"]] = str(named[0]["name"])
    return out


def encode_envelope(entity_type: str, change: Mapping[str, Any], root: Path | None = None) -> bytes:
    """Avro bytes of the envelope fields alone: the same for every holder of one change (encoded once).

    Record values in unions are named to fastavro (``(name, value)``), as in ``Route.encode_body``: they come
    from a decoded change, so fastavro need not validate them to pick the branch.
    """
    writer, unions = _envelope_writer(entity_type, root)
    named = {f: (name, change[f]) for f, name in unions.items() if isinstance(change.get(f), Mapping)}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, writer, {**change, **named} if named else change)
    return out.getvalue()


def _tail_writer(schema: Schema) -> Any:
    """A record of just ``before`` and ``after``: Avro writes fields in order, so envelope + tail = the record."""
    fields = [json.loads(json.dumps(f)) for f in schema["fields"][-2:]]
    tail: Schema = {"type": "record", "name": f"{schema['name']}Tail", "namespace": schema.get("namespace")}
    tail["fields"] = fields
    return fastavro.parse_schema(tail)


def _entity_branch(tail: Any) -> str:
    """Full name of the entity record in the tail's ``after`` union (``["null", <entity>]``)."""
    for branch in tail["fields"][-1]["type"]:
        if branch != "null":
            return str(branch["name"] if isinstance(branch, dict) else branch)
    raise ConfigError("the change schema's 'after' has no entity record branch")


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
    branch: str = field(compare=False, repr=False, default="")

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
        tail = _tail_writer(schema)
        return cls(agreement, entity_type, fields, nullable, schema, inbox, subject, tail, _entity_branch(tail))

    def encode_body(self, envelope: bytes, record: Mapping[str, Any]) -> bytes:
        """The Avro body of an inbox record from the change's envelope bytes and this holder's before/after.

        ``before`` and ``after`` are named to fastavro as ``(branch, entity)``: they are projections of a decoded
        change, so their values already fit, and fastavro skips validating every field to pick the union branch
        (a third of the encoding time).
        """
        out = io.BytesIO(envelope)
        out.seek(len(envelope))
        before, after = record.get("before"), record.get("after")
        tail = {
            "before": None if before is None else (self.branch, before),
            "after": None if after is None else (self.branch, after),
        }
        fastavro.schemaless_writer(out, self.tail, tail)
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
        if not hidden:
            return {name: entity.get(name) for name in self.fields}
        return {name: (None if name in hidden else entity.get(name)) for name in self.fields}
