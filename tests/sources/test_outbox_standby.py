"""Two ``source run`` on one outbox: one publishes, the other stands by and takes over when the first is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from publisher.change_kit import person_change, person_id, read_topic
from source_kit import insert_outbox, payload, query, source_process

from connectors.sources.outbox_lock import OutboxLock
from onceonly.settings import Settings

pytestmark = pytest.mark.broker


def test_the_standby_publishes_nothing_until_the_leader_dies_then_takes_over(
    topics: Settings, app_db: str, tmp_path: Path
) -> None:
    config = tmp_path / "onceonly.yaml"
    source = {"kind": "outbox", "department": "public_security", "url": app_db, "poll_interval": 0.2}
    config.write_text(yaml.safe_dump({"sources": {"hukou": source}}))
    marked = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL"

    def rows(start: int) -> None:
        insert_outbox(
            app_db, [("person", person_id(k), payload(person_change(person_id(k)))) for k in range(start, start + 100)]
        )

    rows(0)
    leader = source_process(config, topics, tmp_path / "a")
    _wait_for(lambda: int(query(app_db, marked)[0][0]) == 100, leader, "the leader to publish")
    standby = source_process(config, topics, tmp_path / "b")
    try:
        time.sleep(3)  # the standby is up and has looked more than once
        rows(100)
        _wait_for(lambda: int(query(app_db, marked)[0][0]) == 200, leader, "the leader to publish more")
        os.kill(leader.pid, signal.SIGKILL)
        leader.wait(10)
        killed_at = time.time()
        rows(200)  # only the standby is left to publish these
        _wait_for(lambda: int(query(app_db, marked)[0][0]) == 300, standby, "the standby to take over")
    finally:
        for proc in (leader, standby):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        output, _ = standby.communicate(timeout=30)
    said = {json.loads(line)["message"]: json.loads(line)["ts"] for line in output.splitlines() if line.startswith("{")}
    standing_by = [ts for message, ts in said.items() if "standing by, another instance publishes" in message]
    took_over = [ts for message, ts in said.items() if "took over publishing onceonly-outbox:outbox" in message]
    assert standing_by and took_over, output
    assert datetime.fromisoformat(took_over[0]).timestamp() >= killed_at - 0.1, "took over before the leader died"

    records = read_topic(topics, "change.person", expect=300, timeout=60)
    assert len({r["event_id"] for _, r, _ in records}) == 300


def test_the_lock_is_one_holder_at_a_time_and_freed_on_release(app_db: str) -> None:
    engines = [sa.create_engine(app_db), sa.create_engine(app_db)]
    first, second = (OutboxLock(e, "outbox", None) for e in engines)
    try:
        assert first.acquire() and first.held()
        assert not second.acquire() and not second.held()
        first.release()
        assert second.acquire() and not first.acquire()
    finally:
        first.release()
        second.release()
        for e in engines:
            e.dispose()


def _wait_for(check: Callable[[], bool], proc: subprocess.Popen[str], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"the process exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
