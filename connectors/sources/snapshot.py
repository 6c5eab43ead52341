"""Snapshot diff source, for systems that cannot be changed: compare today's table or export with the last one.

Each run reads the whole input, diffs it against the state file (``snapshot_diff``), publishes creates, updates
and deletes with ``before`` and ``after``, and remembers each change once the broker acknowledged it. A re-run on
the same input emits nothing; a crash mid-run re-emits only what was not acknowledged, with the same versions.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from connectors.sources.config import SnapshotSourceConfig
from connectors.sources.runner import Step
from connectors.sources.snapshot_diff import Emit, canonical, diff, too_many_deletes
from connectors.sources.snapshot_input import SnapshotInput, open_input
from connectors.sources.snapshot_state import SnapshotState
from onceonly.metrics import PUBLISH_REJECTED
from onceonly.publisher import Coercer, Prepared, Publisher, PublishFailed, PublishResult, entity_record_schema
from onceonly.standard import RecordInvalid, change_schema

log = logging.getLogger(__name__)


def state_path(config: SnapshotSourceConfig, state_dir: Path) -> Path:
    """Where a snapshot source keeps its last snapshot and its dead letters."""
    return config.state or state_dir / "sources" / f"{config.name}.sqlite"


class SnapshotSource:
    kind = "snapshot_diff"

    def __init__(self, config: SnapshotSourceConfig, publisher: Publisher, state_dir: Path) -> None:
        self.name = config.name
        self.config = config
        self.publisher = publisher
        self.state_path = state_path(config, state_dir)
        self.entity = entity_record_schema(change_schema(config.entity_type))
        self.fields = [f["name"] for f in self.entity["fields"]]
        self.key_field = config.key_field or self.fields[0]
        csv = config.input.kind == "csv"
        self.coercer = Coercer(empty_is_null=csv, numbers_as_text=True)
        self.state: SnapshotState | None = None
        self.input: SnapshotInput | None = None
        self._due = 0.0

    def open(self) -> None:
        self.state = SnapshotState(self.state_path)
        self.input = open_input(self.config.input)

    def close(self) -> None:
        if self.input is not None:
            self.input.close()
        if self.state is not None:
            self.state.close()

    def wait(self, timeout: float, stop: threading.Event) -> None:
        stop.wait(timeout)

    # -- reading --------------------------------------------------------------------------------------
    def _mapped(self, row: dict[Any, Any]) -> dict[str, Any]:
        """The row in entity field names: ``columns`` renames (and selects); by default, same-named fields."""
        if self.config.columns is not None:
            return {field: row[column] for column, field in self.config.columns.items() if column in row}
        return {k: v for k, v in row.items() if k in self.fields}

    def read(self) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Current records by key, and keys whose rows were refused this time (they must not look deleted)."""
        assert self.input is not None
        current: dict[str, dict[str, Any]] = {}
        unreadable: set[str] = set()
        for number, row in enumerate(self.input.rows(), start=1):
            mapped = self._mapped(row)
            key = str(mapped.get(self.key_field) or f"row {number}")
            fingerprint = hashlib.sha256(repr(sorted(mapped.items(), key=str)).encode()).hexdigest()
            try:
                if None in row:
                    raise RecordInvalid("", f"row {number} has more cells than the header")
                record = self.coercer.record(self.entity, mapped, "after")
                if key in current or key in unreadable:
                    raise RecordInvalid(self.key_field, f"{key} appears more than once in the input")
            except RecordInvalid as e:
                current.pop(key, None)
                unreadable.add(key)
                PUBLISH_REJECTED.labels(self.name, "invalid").inc()
                self._refuse(key, fingerprint, e, repr(mapped))
                continue
            current[key] = record
        return current, unreadable

    def _refuse(self, key: str, fingerprint: str, error: RecordInvalid, record: str | None) -> None:
        """Dead-letter a record in the state file; the same record is reported once, not on every run."""
        assert self.state is not None
        if self.state.dead_lettered(key, fingerprint):
            return
        log.warning("source %s: %s dead-lettered: %s", self.name, key, error)
        self.state.dead_letter(key, fingerprint, error.field, error.reason, record)

    # -- one run --------------------------------------------------------------------------------------
    def step(self) -> Step:
        """Run the diff when it is due (every ``interval``); between runs, report alive and do nothing."""
        if time.monotonic() < self._due:
            return Step()
        assert self.state is not None and self.input is not None
        current, unreadable = self.read()
        known = self.state.known()
        emits = diff(current, known, unreadable=unreadable, first_op=self.config.first_op)
        if refusal := too_many_deletes(emits, known, self.config.max_delete_fraction):
            log.error("source %s: %s", self.name, refusal)
            PUBLISH_REJECTED.labels(self.name, "mass_delete").inc()
            self._due = time.monotonic() + self.config.interval
            return Step(rejected=len(emits))
        published, rejected = self.publish(emits)
        self._due = time.monotonic() + self.config.interval
        return Step(published=published, rejected=rejected)

    def change(self, emit: Emit) -> dict[str, Any]:
        assert self.state is not None
        before = self.state.record(emit.key) if emit.op in ("u", "d") else None
        return {
            "entity_type": self.config.entity_type,
            "entity_key": emit.key,
            "authority": self.config.department,
            "authority_version": emit.version,
            "op": emit.op,
            "event_type": emit.event_type,
            "before": before,
            "after": emit.after,
        }

    def publish(self, emits: list[Emit]) -> tuple[int, int]:
        """Publish in batches; remember each batch's acknowledged changes before sending the next."""
        assert self.state is not None
        published = rejected = 0
        source = {"system": self.config.system, "table": self.input.describe() if self.input else None}
        for i in range(0, len(emits), self.config.batch_size):
            ready: list[tuple[Emit, Prepared]] = []
            for emit in emits[i : i + self.config.batch_size]:
                if emit.digest and self.state.dead_lettered(emit.key, emit.digest):
                    continue  # refused before as it is; it is tried again once the record changes
                try:
                    ready.append((emit, self.publisher.prepare(self.change(emit), source=source)))
                except RecordInvalid as e:
                    rejected += 1
                    record = canonical(emit.after) if emit.after is not None else None
                    self._refuse(emit.key, emit.digest or f"deleted@{emit.version}", e, record)
            outcomes = self.publisher.send([p for _, p in ready])
            acked = [e for (e, _), o in zip(ready, outcomes, strict=True) if isinstance(o, PublishResult)]
            self.state.commit(acked)
            published += len(acked)
            failed = [(e, o) for (e, _), o in zip(ready, outcomes, strict=True) if isinstance(o, PublishFailed)]
            for emit, out in failed:
                if not out.retriable:  # refused for good (too large, not authorized): dead-letter, go on
                    rejected += 1
                    error = RecordInvalid("", f"the broker refused it: {out}")
                    self._refuse(emit.key, emit.digest or f"deleted@{emit.version}", error, None)
            if retry := [o for _, o in failed if o.retriable]:
                raise PublishFailed(f"{len(retry)} of {len(ready)} changes not acknowledged: {retry[0]}")
        return published, rejected
