"""From a change as a department describes it to the exact bytes, key and topic that go to Kafka.

Everything that can be wrong with a change is found here, before anything is sent: an unknown entity type, a
department that is not its authority, a field the schema does not have, a bad ID number. Defaults are filled the
same way on every path (SDK, sources, gateway, CLI), so the same change always becomes the same event.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from onceonly.catalog import load_catalog, load_departments
from onceonly.errors import ConfigError
from onceonly.publisher.coerce import Coercer, expand
from onceonly.settings import Settings
from onceonly.signing import Signer, signer_for
from onceonly.standard import RecordInvalid, Serde, change_schema, check_change, event_id, subject_for

Schema = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated, encoded change, ready for the producer."""

    topic: str
    key: bytes
    value: bytes
    event_id: str
    entity_type: str
    entity_key: str
    authority: str
    authority_version: int
    signature: tuple[tuple[str, bytes], ...] = ()
    """The authority's signature headers (``ONCEONLY_SIGNATURES=require``), over exactly ``key`` and ``value``."""

    @property
    def headers(self) -> list[tuple[str, str | bytes | None]]:
        return [("event_id", self.event_id.encode()), ("authority", self.authority.encode()), *self.signature]


@dataclass(frozen=True, slots=True)
class _Target:
    topic: str
    subject: str
    schema: Schema
    expanded: Any
    authority: str
    unions: dict[str, str]
    """Field -> record name, for fields whose type is null or one record (``before``, ``after``, ``source``)."""


def _record_unions(expanded: Any) -> dict[str, str]:
    out = {}
    for f in expanded["fields"]:
        branches = f["type"] if isinstance(f["type"], list) else []
        named = [b for b in branches if isinstance(b, dict) and b.get("type") == "record"]
        if len(named) == 1 and len(branches) == 2 and "null" in branches:
            out[f["name"]] = str(named[0]["name"])
    return out


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Preparer:
    """Fills defaults, validates and encodes changes for one deployment (its settings and registry)."""

    def __init__(self, settings: Settings, serde: Serde, *, connector: str = "sdk") -> None:
        self.settings = settings
        self.serde = serde
        self.connector = connector
        self._targets: dict[str, _Target] = {}
        self._coercer = Coercer()
        self._signers: dict[str, Signer | None] = {}

    def target(self, entity_type: str) -> _Target:
        """Topic, subject, schema and authority of an entity type (looked up once)."""
        found = self._targets.get(entity_type)
        if found is None:
            try:
                topic = self.settings.topic(load_catalog().change_topic(entity_type))
                authority = load_departments().authority_of(entity_type).code
                schema = change_schema(entity_type)
            except ConfigError as e:
                raise RecordInvalid("entity_type", e.message) from None
            expanded = expand(schema)
            found = _Target(topic, subject_for(topic), schema, expanded, authority, _record_unions(expanded))
            self._targets[entity_type] = found
        return found

    def complete(self, change: Mapping[str, Any], *, source: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The change with JSON values converted and every default filled; nothing is checked beyond types."""
        entity_type = change.get("entity_type")
        if not isinstance(entity_type, str) or not entity_type:
            raise RecordInvalid("entity_type", "must name an entity type, e.g. person")
        target = self.target(entity_type)
        record = self._coercer.record(target.expanded, change, "")
        authority = record.setdefault("authority", target.authority)
        if authority != target.authority:
            raise RecordInvalid(
                "authority", f"{authority} is not the authority for {entity_type} ({target.authority} is)"
            )
        stamp = now_ms()
        record.setdefault("recorded_at", stamp)
        record.setdefault("ts_ms", stamp)
        record.setdefault("restrictions", [])
        if record.get("source") is None:
            record["source"] = {"connector": self.connector, "department": authority, **(source or {})}
        key, version = record.get("entity_key"), record.get("authority_version")
        if isinstance(key, str) and key and isinstance(version, int) and version >= 1:
            derived = event_id(authority, entity_type, key, version)
            given = record.setdefault("event_id", derived)
            if given != derived:
                raise RecordInvalid(
                    "event_id", f"{given} is not uuid5(authority, entity_type, entity_key, version) = {derived}"
                )
        elif "authority_version" not in record:
            raise RecordInvalid("authority_version", "is required: the authority's version of this entity")
        return record

    def prepare(self, change: Mapping[str, Any], *, source: Mapping[str, Any] | None = None) -> Prepared:
        """Validate and encode one change; ``RecordInvalid`` names the field, and nothing is sent."""
        record = self.complete(change, source=source)
        check_change(record)
        target = self._targets[record["entity_type"]]
        value = self._encode(target, record)
        key = record["entity_key"].encode()
        return Prepared(
            topic=target.topic,
            key=key,
            value=value,
            event_id=record["event_id"],
            entity_type=record["entity_type"],
            entity_key=record["entity_key"],
            authority=record["authority"],
            authority_version=record["authority_version"],
            signature=self._signature(record["authority"], key, value),
        )

    def _signature(self, authority: str, key: bytes, value: bytes) -> tuple[tuple[str, bytes], ...]:
        """Signed by the authority's own key when signatures are required (its key file is loaded once)."""
        if self.settings.signatures == "off":
            return ()
        if authority not in self._signers:
            self._signers[authority] = signer_for(self.settings, authority)
        signer = self._signers[authority]
        return tuple(signer.headers(key, value)) if signer is not None else ()

    def _encode(self, target: _Target, record: dict[str, Any]) -> bytes:
        """Framed Avro of a completed, checked change.

        Record values in unions go to fastavro as ``(record name, value)``: it then writes them without first
        validating every field to choose the union branch (a third of the encoding time). That check is not
        lost: ``complete`` converted every value to its field's type. If fastavro still refuses the record, it is
        encoded again as given, so the error names the field as always.
        """
        named = {f: (name, record[f]) for f, name in target.unions.items() if isinstance(record.get(f), Mapping)}
        if named:
            try:
                return self.serde.encode(target.schema, target.subject, {**record, **named})
            except RecordInvalid:
                pass
        return self.serde.encode(target.schema, target.subject, record)
