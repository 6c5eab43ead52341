"""SIGKILL a snapshot run mid-way and start it again: N rows in, N distinct event ids out, none twice different."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from publisher.change_kit import person_id, read_topic
from source_kit import COLUMNS, LEGACY, execute, kill_mid_run_and_finish, legacy_rows

from onceonly.settings import Settings

pytestmark = pytest.mark.broker
ROWS = 1500


def remembered(state: Path) -> int:
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(state, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM snapshot").fetchone()[0])
    except sqlite3.OperationalError:  # the source is creating its tables right now
        return 0


def test_kill_mid_run_and_restart(topics: Settings, app_db: str, tmp_path: Path) -> None:
    execute(app_db, LEGACY)
    legacy_rows(app_db, ROWS)
    state = tmp_path / "hukou-state.sqlite"
    source = {
        "kind": "snapshot",
        "department": "public_security",
        "entity_type": "person",
        "input": {"kind": "sql", "url": app_db, "table": "rk_jbxx"},
        "columns": COLUMNS,
        "state": str(state),
        "batch_size": 50,
    }
    config = tmp_path / "onceonly.yaml"
    config.write_text(yaml.safe_dump({"sources": {"hukou-table": source}}))

    done = kill_mid_run_and_finish(config, topics, tmp_path / "state", lambda: remembered(state))
    assert done < ROWS, "killed too late: the run had finished"
    assert remembered(state) == ROWS

    records = read_topic(topics, "change.person", expect=ROWS, timeout=60)
    ids: dict[str, set[str]] = defaultdict(set)
    for key, record, _ in records:
        ids[key].add(record["event_id"])
    assert sorted(ids) == sorted(person_id(k) for k in range(ROWS))
    assert all(len(v) == 1 for v in ids.values())  # re-sent after the kill: the same event
