"""SIGKILL ``onceonly source run`` mid-batch (rows acknowledged, not marked sent) and start it again: N rows in, N
distinct event ids out, and each row sent twice carries one event id."""

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
    kill_between_ack_and_mark_and_finish,
    outbox_config,
    payload,
    query,
    source_process,
)

from connectors.sources import run_source
from onceonly.settings import Settings
from services.operator.follow import Follower

pytestmark = pytest.mark.broker
ROWS = 2000


def test_kill_and_restart_loses_nothing_and_duplicates_keep_their_event_id(
    topics: Settings, app_db: str, tmp_path: Path
) -> None:
    insert_outbox(app_db, [("person", person_id(k), payload(person_change(person_id(k)))) for k in range(ROWS)])
    config = tmp_path / "onceonly.yaml"
    source = {"kind": "outbox", "department": "public_security", "url": app_db, "batch_size": 50}
    config.write_text(yaml.safe_dump({"sources": {"hukou": source}}))
    follower = Follower(topics, [topics.topic("change.person")])
    seen: list[int] = []

    def published() -> int:
        seen.append(len(follower.new()))
        return sum(seen)

    marked, out = kill_between_ack_and_mark_and_finish(config, topics, tmp_path / "state", app_db, published)
    assert 0 < marked < ROWS, "the kill must land mid-run, with rows partly marked"
    assert out > marked, "the kill must land mid-batch: acknowledged by the broker, not marked sent"

    assert query(app_db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == [(0,)]
    records = read_topic(topics, "change.person", expect=ROWS + out - marked, timeout=60)
    by_row: dict[str, list[str]] = defaultdict(list)
    for _, record, _ in records:
        by_row[record["source"]["position"]].append(record["event_id"])
    twice = {row: ids for row, ids in by_row.items() if len(ids) > 1}
    assert len(by_row) == ROWS, "every row published"
    assert len({r["event_id"] for _, r, _ in records}) == ROWS, "N rows in, N distinct event ids out"
    assert len(records) - ROWS == out - marked == len(twice), "what was out and not marked, and only that, went twice"
    assert all(len(set(ids)) == 1 for ids in twice.values()), "a row published twice carries one event id"


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
