"""The registry's state as the store's records say it: schemas by global id, subjects' versions, compatibility levels.

Applying the same records in the same order always gives the same state, which is how a restarted registry serves
the same ids: it replays its topic through ``State.apply``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from services.registry.compat import DEFAULT_LEVEL, InvalidSchema, Parsed, parse
from services.registry.store import Record

log = logging.getLogger("onceonly.registry")


@dataclass
class Version:
    """One version of one subject; a soft-deleted one is kept (and hidden) until deleted permanently."""

    subject: str
    version: int
    id: int
    deleted: bool = False


def schema_record(subject: str, version: int, schema_id: int, text: str, *, deleted: bool) -> Record:
    key = {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}
    value = {"subject": subject, "version": version, "id": schema_id, "schema": text, "deleted": deleted}
    return Record(key, value)


def schema_tombstone(subject: str, version: int) -> Record:
    return Record({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}, None)


def config_record(subject: str | None, level: str | None) -> Record:
    """A compatibility level for ``subject`` (None: the global one); a None level removes it."""
    return Record(
        {"keytype": "CONFIG", "subject": subject, "magic": 0},
        None if level is None else {"compatibilityLevel": level},
    )


class State:
    """Everything the registry answers from, rebuilt from records on start."""

    def __init__(self) -> None:
        self.schemas: dict[int, Parsed] = {}
        self.ids: dict[str, int] = {}  # Parsed.key -> id: the same schema gets the same id in every subject
        self.subjects: dict[str, dict[int, Version]] = {}
        self.levels: dict[str | None, str] = {}  # None: the global level

    def apply(self, record: Record) -> None:
        keytype = record.key.get("keytype")
        if keytype == "SCHEMA":
            self._apply_schema(record.key, record.value)
        elif keytype == "CONFIG":
            subject = record.key.get("subject")
            if record.value is None:
                self.levels.pop(subject, None)
            else:
                self.levels[subject] = str(record.value["compatibilityLevel"])

    def _apply_schema(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        subject, number = str(key["subject"]), int(key["version"])
        if value is None:
            versions = self.subjects.get(subject, {})
            versions.pop(number, None)
            if not versions:
                self.subjects.pop(subject, None)
            return
        schema_id = int(value["id"])
        if schema_id not in self.schemas:
            try:
                parsed = parse(str(value["schema"]))
            except InvalidSchema as e:
                log.error("schema id %d in the store no longer parses (%s); its versions are not served", schema_id, e)
                return
            self.schemas[schema_id] = parsed
            self.ids.setdefault(parsed.key, schema_id)
        self.subjects.setdefault(subject, {})[number] = Version(subject, number, schema_id, bool(value.get("deleted")))

    def next_id(self) -> int:
        return max(self.schemas, default=0) + 1

    def versions(self, subject: str, *, deleted: bool = False) -> list[Version]:
        """The subject's versions, oldest first; soft-deleted ones only when ``deleted``."""
        found = self.subjects.get(subject, {})
        return [v for _, v in sorted(found.items()) if deleted or not v.deleted]

    def level(self, subject: str | None) -> str:
        """The subject's own level, else the global one, else BACKWARD (Confluent's default)."""
        if subject is not None and subject in self.levels:
            return self.levels[subject]
        return self.levels.get(None, DEFAULT_LEVEL)

    def referenced(self, schema_id: int) -> list[Version]:
        return [v for vs in self.subjects.values() for v in vs.values() if v.id == schema_id]
