"""The files sink: an append-only change log per entity type, as JSON lines or CSV.

The file is its own watermark: every line carries entity, version and event id, so on open the sink reads its
files back and knows what it already wrote. One batch is appended per file with one write and an fsync; a line
cut short by a crash is removed on open. So a redelivered change is recognised as a duplicate, as in SQL.
Deaths and identifier upgrades are written as they come (the reader applies them); nothing is rewritten.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from glob import glob
from pathlib import Path
from typing import IO, Any

from connectors.sinks.base import Outcome, Result, rejected
from connectors.sinks.change import Change
from connectors.sinks.config import FileSinkConfig
from connectors.sinks.errors import MappingError, TransientSinkError
from connectors.sinks.guard import EntityRef, Watermark, advance, guard
from connectors.sinks.payload import ENVELOPE_COLUMNS, envelope, rename, to_json
from connectors.sinks.plan import DeletePolicy
from onceonly.errors import ConfigError

log = logging.getLogger(__name__)

_OUTCOME: dict[str, Outcome] = {
    "apply": "applied",
    "skipped_duplicate": "skipped_duplicate",
    "skipped_stale": "skipped_stale",
}


class FileSink:
    """Appends applied changes to ``path`` (``{entity_type}`` expanded); deletes are lines too (``op`` = d).

    One worker writes the files: the watermarks live in this process, so a second worker is refused at open.
    """

    def __init__(self, config: FileSinkConfig, *, delete_policy: DeletePolicy = "mark") -> None:
        self.config = config
        self.delete_policy = delete_policy  # a log records deletes as they are; the policy is the reader's
        self._marks: dict[EntityRef, Watermark] = {}
        self._lock: IO[str] | None = None

    def __repr__(self) -> str:
        return f"FileSink({self.config.path}, {self.config.format})"

    def path_for(self, entity_type: str) -> Path:
        return Path(self.config.path.replace("{entity_type}", entity_type))

    def open(self) -> None:
        """Take the writer's lock, repair a torn last line and rebuild the watermarks from what the files hold."""
        self._lock = _writer_lock(self.config.path)
        self._marks.clear()
        try:
            for path in self._existing_files():
                text = _repair(path, self.config.format)
                for change in _read_back(path, text, self.config.format):
                    advance(change, self._marks)
        except OSError as e:
            self.close()
            raise TransientSinkError(f"cannot read back {e.filename}: {e.strerror}") from e
        except ConfigError:
            self.close()
            raise

    def close(self) -> None:
        self._marks.clear()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def apply(self, changes: Sequence[Change], stop: threading.Event | None = None) -> list[Result]:
        """Decide the batch, then append per file; a file that fails leaves the files before it applied."""
        results: list[Result | None] = [None] * len(changes)
        admitted: list[tuple[int, Change]] = []
        for i, c in enumerate(changes):
            if self.config.format == "csv" and c.entity_type not in self.config.fields:
                results[i] = rejected(c, MappingError(f"no csv columns mapped for entity type {c.entity_type!r}"))
            else:
                admitted.append((i, c))
        decisions, _ = guard([c for _, c in admitted], self._marks)
        lines: dict[tuple[Path, str], list[Change]] = {}
        for d in decisions:
            if d.verdict == "apply":
                lines.setdefault((self.path_for(d.change.entity_type), d.change.entity_type), []).append(d.change)
        for (path, entity_type), batch in lines.items():
            self._append(path, entity_type, [self._line(c) for c in batch])
            for c in batch:  # a later file failing must not make these look new again
                advance(c, self._marks)
        for (i, _), d in zip(admitted, decisions, strict=True):
            results[i] = Result(d.change, _OUTCOME[d.verdict], d.reason, repeat=d.repeat, applied_at=d.applied_at)
        return [r for r in results if r is not None]

    def _line(self, change: Change) -> str:
        fields = self.config.fields.get(change.entity_type)
        data = rename(change.after if not change.is_delete else change.before, fields) or {}
        if self.config.format == "jsonl":
            return to_json({**envelope(change), "data": data}) + "\n"
        out = io.StringIO()
        row = [_cell(v) for v in envelope(change).values()] + [_cell(data.get(c)) for c in (fields or {}).values()]
        csv.writer(out, lineterminator="\n").writerow(row)
        return out.getvalue()

    def _header(self, entity_type: str) -> str:
        out = io.StringIO()
        columns = list(ENVELOPE_COLUMNS) + list(self.config.fields.get(entity_type, {}).values())
        csv.writer(out, lineterminator="\n").writerow(columns)
        return out.getvalue()

    def _append(self, path: Path, entity_type: str, batch: list[str]) -> None:
        """One write per file per batch; on failure cut the file back so no half batch stays behind."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8", newline="") as f:
                start = f.tell()
                text = "".join(batch)
                if self.config.format == "csv" and start == 0:
                    text = self._header(entity_type) + text
                try:
                    f.write(text)
                    f.flush()
                    if self.config.fsync:
                        os.fsync(f.fileno())
                except OSError:
                    f.truncate(start)
                    raise
        except OSError as e:
            raise TransientSinkError(f"cannot append to {path}: {e}") from e

    def _existing_files(self) -> list[Path]:
        pattern = self.config.path.replace("{entity_type}", "*")
        return sorted(Path(p) for p in glob(pattern) if Path(p).is_file())


def _writer_lock(pattern: str) -> IO[str]:
    """An exclusive lock, next to the files, for as long as the sink is open."""
    prefix = pattern.split("{entity_type}")[0]
    folder = Path(prefix) if prefix.endswith("/") else Path(prefix).parent
    name = f".onceonly-{hashlib.sha1(pattern.encode()).hexdigest()[:12]}.lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / name).open("a", encoding="utf-8")
    except OSError as e:
        raise TransientSinkError(f"cannot open {folder}: {e}") from e
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        handle.close()
        raise ConfigError(f"another worker is writing {pattern}", hint="the files sink takes one worker") from e
    return handle


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return to_json(value)
    return str(value.isoformat() if hasattr(value, "isoformat") else value)


def _repair(path: Path, fmt: str) -> str:
    """Drop a last record that a crash cut short; return the file's complete text."""
    text = path.read_text(encoding="utf-8")
    end = _complete_length(text, fmt)
    if end < len(text):
        log.warning("%s: dropping %d bytes of a record cut short", path, len(text) - end)
        with path.open("r+", encoding="utf-8", newline="") as f:
            f.truncate(len(text[:end].encode("utf-8")))
        text = text[:end]
    return text


def _complete_length(text: str, fmt: str) -> int:
    """Length of the text up to the end of its last complete record (a newline outside CSV quotes)."""
    if fmt == "jsonl":
        return text.rfind("\n") + 1
    quoted, end = False, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == "\n" and not quoted:
            end = i + 1
    return end


def _read_back(path: Path, text: str, fmt: str) -> Iterable[Change]:
    """The changes a file already holds, as far as the version guard needs them."""
    lines = [line for line in text.splitlines() if line.strip()]
    rows: Iterable[Any] = lines if fmt == "jsonl" else csv.DictReader(io.StringIO(text))
    for n, row in enumerate(rows, 1):
        try:
            record: Mapping[str, Any] = json.loads(row) if fmt == "jsonl" else row
            yield Change(
                event_id=str(record["event_id"]),
                event_type=str(record["event_type"]),
                op="d" if record["op"] == "d" else "u",
                entity_type=str(record["entity_type"]),
                entity_key=str(record["entity_key"]),
                authority=str(record.get("authority") or ""),
                authority_version=int(record["authority_version"]),
                recorded_at=0,
                supersedes_key=record.get("supersedes_key") or None,
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ConfigError(f"{path}: record {n} is not a onceonly change line: {e}") from e
