"""The registry's operations, with Confluent's semantics and error codes, independent of HTTP.

Every change is written to the store before the in-memory state changes and before the caller gets an answer, and
one lock serialises everything: two concurrent registrations of a new schema cannot get two ids or one version twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from services.registry import errors
from services.registry.compat import InvalidSchema, Parsed, check, normalize_level, parse
from services.registry.errors import StoreError
from services.registry.state import State, Version, config_record, schema_record, schema_tombstone
from services.registry.store import Record, Store

log = logging.getLogger("onceonly.registry")
MAX_VERSION = 2**31 - 1


def parse_version(text: str) -> int | None:
    """A version number, or None for the latest ("latest" or -1); anything else is 42202."""
    if text == "latest" or text == "-1":
        return None
    try:
        number = int(text)
    except ValueError:
        raise errors.invalid_version(text) from None
    if not 1 <= number <= MAX_VERSION:
        raise errors.invalid_version(text)
    return number


def parse_schema_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise errors.schema_not_found(text) from None


def schema_from(body: Any) -> Parsed:
    """The schema of a register, lookup or compatibility request body (AVRO only, no references)."""
    if not isinstance(body, dict):
        raise errors.invalid_schema("the request body must be a JSON object with a 'schema' string")
    schema_type = body.get("schemaType") or "AVRO"
    if str(schema_type).upper() != "AVRO":
        raise errors.invalid_schema(f"schemaType {schema_type} is not supported: this registry serves AVRO only")
    if body.get("references"):
        raise errors.invalid_schema("schema references are not supported: register a self-contained schema")
    text = body.get("schema")
    if not isinstance(text, str):
        raise errors.invalid_schema("'schema' must be a string holding the Avro schema as JSON")
    try:
        return parse(text)
    except InvalidSchema as e:
        raise errors.invalid_schema(str(e)) from e


def level_from(body: Any) -> str:
    """The level of a config update: Confluent clients send ``compatibility``, some send ``compatibilityLevel``."""
    raw = body.get("compatibility", body.get("compatibilityLevel")) if isinstance(body, dict) else None
    level = normalize_level(raw)
    if level is None:
        raise errors.invalid_level(raw)
    return level


class Registry:
    """Subjects, versions, ids and levels over a ``Store``; methods return what the REST API sends back."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.state = State()
        self._lock = threading.Lock()
        loaded = store.load()
        for record in loaded:
            self.state.apply(record)
        log.info(
            "registry state from %s: %d record(s), %d schema(s), %d subject(s)",
            store.description,
            len(loaded),
            len(self.state.schemas),
            len(self.state.subjects),
        )

    def _write(self, records: Sequence[Record]) -> None:
        try:
            self.store.append(records)
        except StoreError as e:
            log.error("store write failed: %s", e)
            raise errors.store_error(str(e)) from e
        for record in records:
            self.state.apply(record)

    def _text(self, v: Version) -> str:
        return self.state.schemas[v.id].text

    def _describe(self, v: Version) -> dict[str, Any]:
        return {"subject": v.subject, "version": v.version, "id": v.id, "schema": self._text(v)}

    def _resolve(self, subject: str, version: str, *, deleted: bool = False) -> Version:
        number = parse_version(version)
        found = self.state.versions(subject, deleted=deleted)
        if not found:
            raise errors.subject_not_found(subject)
        if number is None:
            return found[-1]
        for v in found:
            if v.version == number:
                return v
        raise errors.version_not_found(subject, number)

    # -- reads -------------------------------------------------------------------------------------------------
    def subjects(self, *, deleted: bool = False, deleted_only: bool = False, prefix: str = "") -> list[str]:
        with self._lock:
            out = []
            for name, versions in self.state.subjects.items():
                live = any(not v.deleted for v in versions.values())
                dead = any(v.deleted for v in versions.values())
                wanted = dead if deleted_only else live or (deleted and dead)
                if wanted and name.startswith(prefix):
                    out.append(name)
            return sorted(out)

    def versions(self, subject: str, *, deleted: bool = False, deleted_only: bool = False) -> list[int]:
        with self._lock:
            every = self.state.versions(subject, deleted=True)
            found = [v for v in every if (v.deleted if deleted_only else deleted or not v.deleted)]
            if not found and not (deleted_only and every):
                raise errors.subject_not_found(subject)
            return [v.version for v in found]

    def get_version(self, subject: str, version: str, *, deleted: bool = False) -> dict[str, Any]:
        with self._lock:
            return self._describe(self._resolve(subject, version, deleted=deleted))

    def schema_by_id(self, schema_id: str) -> str:
        with self._lock:
            number = parse_schema_id(schema_id)
            if number not in self.state.schemas or not self.state.referenced(number):
                raise errors.schema_not_found(number)
            return self.state.schemas[number].text

    def id_versions(self, schema_id: str, *, deleted: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            number = parse_schema_id(schema_id)
            found = self.state.referenced(number)
            if not found:
                raise errors.schema_not_found(number)
            return [{"subject": v.subject, "version": v.version} for v in found if deleted or not v.deleted]

    def lookup(self, subject: str, body: Any, *, deleted: bool = False) -> dict[str, Any]:
        with self._lock:
            found = self.state.versions(subject, deleted=deleted)
            if not found:
                raise errors.subject_not_found(subject)
            parsed = schema_from(body)
            for v in reversed(found):
                if self.state.schemas[v.id].key == parsed.key:
                    return self._describe(v)
            raise errors.schema_not_found()

    # -- writes ------------------------------------------------------------------------------------------------
    def register(self, subject: str, body: Any) -> dict[str, Any]:
        """The id of the schema under ``subject``: the existing one, or a new version if the mode allows it."""
        parsed = schema_from(body)
        with self._lock:
            live = self.state.versions(subject)
            for v in reversed(live):
                if self.state.schemas[v.id].key == parsed.key:
                    return {"id": v.id}
            level = self.state.level(subject)
            problems = check(level, parsed, [(f"version {v.version}", self.state.schemas[v.id]) for v in live])
            if problems:
                raise errors.incompatible(subject, level, problems)
            schema_id = self.state.ids.get(parsed.key) or self.state.next_id()
            text = self.state.schemas[schema_id].text if schema_id in self.state.schemas else parsed.text
            version = max(self.state.subjects.get(subject, {}), default=0) + 1
            self._write([schema_record(subject, version, schema_id, text, deleted=False)])
            log.info("registered %s version %d as schema id %d", subject, version, schema_id)
            return {"id": schema_id}

    def delete_version(self, subject: str, version: str, *, permanent: bool = False) -> int:
        with self._lock:
            if not self.state.versions(subject, deleted=True):
                raise errors.subject_not_found(subject)
            # "latest" is the newest live version for a soft delete; a number may name a soft-deleted one
            explicit = parse_version(version) is not None
            v = self._resolve(subject, version, deleted=permanent or explicit)
            if permanent:
                if not v.deleted:
                    raise errors.version_not_soft_deleted(subject, v.version)
                self._write([schema_tombstone(subject, v.version)])
            else:
                if v.deleted:
                    raise errors.version_soft_deleted(subject, v.version)
                self._write([schema_record(subject, v.version, v.id, self._text(v), deleted=True)])
            log.info("deleted %s version %d%s", subject, v.version, " permanently" if permanent else "")
            return v.version

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        """Soft: hide every version (and drop the subject's level); permanent: only after soft, erase them."""
        with self._lock:
            every = self.state.versions(subject, deleted=True)
            if not every:
                raise errors.subject_not_found(subject)
            live = [v for v in every if not v.deleted]
            records: list[Record]
            if permanent:
                if live:
                    raise errors.subject_not_soft_deleted(subject)
                records = [schema_tombstone(subject, v.version) for v in every]
                touched = every
            else:
                if not live:
                    raise errors.subject_soft_deleted(subject)
                records = [schema_record(subject, v.version, v.id, self._text(v), deleted=True) for v in live]
                if subject in self.state.levels:
                    records.append(config_record(subject, None))
                touched = live
            self._write(records)
            log.info("deleted subject %s%s", subject, " permanently" if permanent else "")
            return [v.version for v in touched]

    # -- compatibility ---------------------------------------------------------------------------------------
    def test_compatibility(self, subject: str, version: str | None, body: Any, *, verbose: bool) -> dict[str, Any]:
        """Whether the schema could be registered: against one version, or (``version`` None) as the mode says."""
        with self._lock:
            against = self.state.versions(subject) if version is None else [self._resolve(subject, version)]
            parsed = schema_from(body)
            level = self.state.level(subject)
            messages = check(level, parsed, [(f"version {v.version}", self.state.schemas[v.id]) for v in against])
            answer: dict[str, Any] = {"is_compatible": not messages}
            if verbose:
                answer["messages"] = messages
            return answer

    def get_config(self, subject: str | None, *, default_to_global: bool = False) -> dict[str, str]:
        with self._lock:
            if subject is None or subject in self.state.levels or default_to_global:
                return {"compatibilityLevel": self.state.level(subject)}
            raise errors.subject_config_not_found(subject)

    def set_config(self, subject: str | None, body: Any) -> dict[str, str]:
        level = level_from(body)
        with self._lock:
            self._write([config_record(subject, level)])
            log.info("compatibility of %s set to %s", subject or "(global)", level)
            return {"compatibility": level}

    def delete_config(self, subject: str | None) -> dict[str, str]:
        with self._lock:
            if subject is not None and subject not in self.state.levels:
                if not self.state.versions(subject, deleted=True):
                    raise errors.subject_not_found(subject)
                raise errors.subject_config_not_found(subject)
            previous = self.state.level(subject)
            self._write([config_record(subject, None)])
            return {"compatibilityLevel": previous}
