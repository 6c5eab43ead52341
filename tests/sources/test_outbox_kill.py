"""SIGKILL ``onceonly source run`` mid-batch and start it again: N rows in, N distinct event ids out."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from publisher.change_kit import person_change, person_id, read_topic
from source_kit import (
    execute,
    insert_outbox,
    kill_mid_run_and_finish,
    outbox_config,
    payload,
    query,
    source_process,
)

from connectors.sources import run_source
from onceonly.settings import Settings

pytestmark = pytest.mark.broker
ROWS = 2000


def test_kill_and_restart_loses_nothing_and_duplicates_keep_their_event_id(
    topics: Settings, app_db: str, tmp_path: Path
) -> None:
    insert_outbox(app_db, [("person", person_id(k), payload(person_change(person_id(k)))) for k in range(ROWS)])
    config = tmp_path / "onceonly.yaml"
    source = {"kind": "outbox", "department": "public_security", "url": app_db, "batch_size": 50}
    config.write_text(yaml.safe_dump({"sources": {"hukou": source}}))

    marked = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL"
    sent = kill_mid_run_and_finish(config, topics, tmp_path / "state", lambda: int(query(app_db, marked)[0][0]))
    assert sent < ROWS, "killed too late: the source had finished"

    assert query(app_db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == [(0,)]
    records = read_topic(topics, "change.person", expect=ROWS, timeout=60)
    by_row: dict[str, set[str]] = defaultdict(set)
    for _, record, _ in records:
        by_row[record["source"]["position"]].add(record["event_id"])
    assert len(by_row) == ROWS  # every row published
    assert all(len(ids) == 1 for ids in by_row.values())  # a row published twice carries one event id
    assert len({r["event_id"] for _, r, _ in records}) == ROWS
    print(f"killed after {sent} marked sent; {len(records) - ROWS} rows published twice")


def test_rows_acked_but_not_marked_are_sent_again_as_the_same_events(topics: Settings, app_db: str) -> None:
    """The crash window between the broker's ack and the commit of the mark, reproduced as the state it leaves."""
    insert_outbox(app_db, [("person", person_id(k), payload(person_change(person_id(k)))) for k in range(20)])
    assert run_source(outbox_config(app_db), topics, threading.Event(), once=True).published == 20
    execute(app_db, "UPDATE outbox SET sent_at = NULL WHERE id > 12")

    assert run_source(outbox_config(app_db), topics, threading.Event(), once=True).published == 8

    records = read_topic(topics, "change.person", expect=28)
    assert len(records) == 28
    assert len({r["event_id"] for _, r, _ in records}) == 20


def test_sigterm_stops_within_seconds(topics: Settings, app_db: str, tmp_path: Path) -> None:
    insert_outbox(app_db, [])
    config = tmp_path / "onceonly.yaml"
    source = {"kind": "outbox", "department": "public_security", "url": app_db, "poll_interval": 5}
    config.write_text(yaml.safe_dump({"sources": {"hukou": source}}))
    process = source_process(config, topics, tmp_path / "state")
    time.sleep(3)
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, output
    assert "hukou: 0 published" in output
