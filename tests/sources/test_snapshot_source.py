"""The snapshot source on a CSV export and on SQL tables (SQLite, PostgreSQL): c/u/d with before and after."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from publisher.change_kit import person_id, read_topic
from source_kit import COLUMNS, LEGACY, enterprise, execute, legacy_rows, uscc, write_csv

from connectors.sources import SnapshotSourceConfig, SnapshotState, run_source
from onceonly.settings import Settings

pytestmark = pytest.mark.broker


def csv_config(tmp_path: Path, **overrides: Any) -> SnapshotSourceConfig:
    return SnapshotSourceConfig.model_validate(
        {
            "kind": "snapshot",
            "name": "scjg-export",
            "department": "market_regulation",
            "entity_type": "enterprise",
            "input": {"kind": "csv", "path": str(tmp_path / "export-*.csv")},
            "state": str(tmp_path / "state.sqlite"),
            **overrides,
        }
    )


def run_once(config: SnapshotSourceConfig, settings: Settings) -> tuple[int, int]:
    report = run_source(config, settings, threading.Event(), once=True)
    return report.published, report.rejected


def test_csv_export_diffs_against_the_last_snapshot(topics: Settings, tmp_path: Path) -> None:
    config = csv_config(tmp_path)
    write_csv(tmp_path / "export-0601.csv", [enterprise(n) for n in range(5)])
    assert run_once(config, topics) == (5, 0)
    assert run_once(config, topics) == (0, 0)  # the same input again: nothing

    bad = enterprise(9, uscc=uscc(9)[:-1] + ("0" if uscc(9)[-1] != "0" else "1"))
    rows = [enterprise(0, address="海淀区新址"), enterprise(1), enterprise(3), enterprise(4), enterprise(5), bad]
    write_csv(tmp_path / "export-0602.csv", rows)  # the newest file is the snapshot
    assert run_once(config, topics) == (3, 1)
    assert run_once(config, topics) == (0, 0)  # the bad row is reported once, not on every run

    records = {(k, r["authority_version"]): r for k, r, _ in read_topic(topics, "change.enterprise", expect=8)}
    assert len(records) == 8
    update = records[(uscc(0), 2)]
    assert (update["op"], update["event_type"]) == ("u", "updated")
    assert update["before"]["address"] == "朝阳区0号" and update["after"]["address"] == "海淀区新址"
    delete = records[(uscc(2), 2)]
    assert (delete["op"], delete["after"], delete["before"]["name"]) == ("d", None, "北京第2有限公司")
    assert records[(uscc(5), 1)]["op"] == "c"
    assert records[(uscc(0), 1)]["source"]["connector"] == "snapshot_diff"
    state = SnapshotState(tmp_path / "state.sqlite")
    [(key, field, reason)] = state.dead_letters()
    assert (key, field) == (bad["uscc"], "after.uscc") and "check character" in reason
    state.close()


def test_a_broken_export_does_not_delete_everything(topics: Settings, tmp_path: Path) -> None:
    config = csv_config(tmp_path)
    write_csv(tmp_path / "export-1.csv", [enterprise(n) for n in range(12)])
    assert run_once(config, topics) == (12, 0)
    write_csv(tmp_path / "export-2.csv", [enterprise(0)])
    assert run_once(config, topics) == (0, 11)  # refused as a whole: nothing published
    assert run_once(config.model_copy(update={"max_delete_fraction": 1.0}), topics) == (11, 0)


def sql_config(url: str, tmp_path: Path, **overrides: Any) -> SnapshotSourceConfig:
    return SnapshotSourceConfig.model_validate(
        {
            "kind": "snapshot",
            "name": "hukou-table",
            "department": "public_security",
            "entity_type": "person",
            "input": {"kind": "sql", "url": url, "table": "rk_jbxx"},
            "columns": COLUMNS,
            "state": str(tmp_path / "hukou-state.sqlite"),
            **overrides,
        }
    )


def test_sql_table_with_its_own_column_names(topics: Settings, app_db: str, tmp_path: Path) -> None:
    execute(app_db, LEGACY)
    legacy_rows(app_db, 4)
    config = sql_config(app_db, tmp_path)
    assert run_once(config, topics) == (4, 0)
    assert run_once(config, topics) == (0, 0)

    execute(app_db, f"UPDATE rk_jbxx SET dz = '海淀区2号' WHERE sfzhm = '{person_id(1)}'")
    execute(app_db, f"DELETE FROM rk_jbxx WHERE sfzhm = '{person_id(2)}'")
    assert run_once(config, topics) == (2, 0)

    records = read_topic(topics, "change.person", expect=6)
    last = {key: record for key, record, _ in records}
    assert last[person_id(1)]["op"] == "u" and last[person_id(1)]["after"]["address"] == "海淀区2号"
    assert last[person_id(1)]["before"]["address"] == "朝阳区1号" and last[person_id(1)]["after"]["sex"] == "1"
    assert last[person_id(2)]["op"] == "d" and last[person_id(2)]["authority_version"] == 2
    assert len({r["event_id"] for _, r, _ in records}) == 6
