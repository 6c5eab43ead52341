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

    @property
    def headers(self) -> list[tuple[str, str | bytes | None]]:
        return [("event_id", self.event_id.encode()), ("authority", self.authority.encode())]


@dataclass(frozen=True, slots=True)
class _Target:
    topic: str
    subject: str
    schema: Schema
    expanded: Any
    authority: str


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
            found = _Target(topic, subject_for(topic), schema, expand(schema), authority)
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
        value = self.serde.encode(target.schema, target.subject, record)
        return Prepared(
            topic=target.topic,
            key=record["entity_key"].encode(),
            value=value,
            event_id=record["event_id"],
            entity_type=record["entity_type"],
            entity_key=record["entity_key"],
            authority=record["authority"],
            authority_version=record["authority_version"],
        )
