"""The snapshot source's memory: the last record, digest and version per key, in a SQLite file it owns.

Updated per acknowledged batch in one transaction, so after a crash the next run re-emits exactly what was not
acknowledged, with the same versions (hence the same event ids).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from connectors.sources.snapshot_diff import Emit, Known, canonical

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot (
    key TEXT PRIMARY KEY, version INTEGER NOT NULL, digest TEXT, record TEXT, deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_letter (
    key TEXT NOT NULL, digest TEXT NOT NULL, field TEXT, reason TEXT NOT NULL, record TEXT,
    failed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (key, digest)
);
"""


class SnapshotState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def known(self) -> dict[str, Known]:
        rows = self._db.execute("SELECT key, version, digest, deleted FROM snapshot")
        return {key: Known(version, digest, bool(deleted)) for key, version, digest, deleted in rows}

    def record(self, key: str) -> dict[str, Any] | None:
        """The last record kept for ``key`` (as JSON values: the caller converts dates back)."""
        row = self._db.execute("SELECT record FROM snapshot WHERE key = ? AND deleted = 0", (key,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def commit(self, emits: Iterable[Emit]) -> None:
        """Remember acknowledged changes (one transaction)."""
        rows = [
            (e.key, e.version, e.digest, canonical(e.after) if e.after is not None else None, int(e.op == "d"))
            for e in emits
        ]
        with self._db:
            self._db.executemany(
                "INSERT INTO snapshot (key, version, digest, record, deleted) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET version = excluded.version, digest = excluded.digest, "
                "record = excluded.record, deleted = excluded.deleted",
                rows,
            )

    def dead_lettered(self, key: str, digest: str) -> bool:
        found = self._db.execute("SELECT 1 FROM dead_letter WHERE key = ? AND digest = ?", (key, digest)).fetchone()
        return found is not None

    def dead_letter(self, key: str, digest: str, field: str, reason: str, record: str | None) -> None:
        """Keep a refused record with the reason; the same record is not reported twice."""
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO dead_letter (key, digest, field, reason, record) VALUES (?, ?, ?, ?, ?)",
                (key, digest, field or None, reason, record),
            )

    def dead_letters(self) -> list[tuple[str, str, str]]:
        """(key, field, reason) of every refused record, oldest first."""
        return [(str(k), str(f), str(r)) for k, f, r in self._db.execute(_DEAD_LETTERS)]


_DEAD_LETTERS = "SELECT key, COALESCE(field, ''), reason FROM dead_letter ORDER BY failed_at, key"


def read_dead_letters(path: Path) -> list[tuple[str, str, str]] | None:
    """``dead_letters()`` of a state file, read-only (an operator looking must not create or change it); None when
    the source has not written its state yet."""
    if not path.is_file():
        return None
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return [(str(k), str(f), str(r)) for k, f, r in db.execute(_DEAD_LETTERS)]
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return None
        raise
    finally:
        db.close()
