"""Helpers for source tests: an application's outbox on SQLite or PostgreSQL, configs, a CLI subprocess."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from publisher.change_kit import person_id

from connectors.sources import OutboxSourceConfig, RunReport, create_outbox, run_source
from onceonly.settings import Settings
from onceonly.standard.identity import uscc_check_char
from onceonly.testing import process_env

PROJECT = Path(__file__).resolve().parents[2]


def payload(change: dict[str, Any]) -> str:
    """What the application writes to the outbox: the change without what the row says (type, key, version)."""
    drop = ("entity_type", "entity_key", "authority_version")
    return json.dumps({k: v for k, v in change.items() if k not in drop}, ensure_ascii=False)


def insert_outbox(url: str, rows: list[tuple[str, str, str]]) -> None:
    """Insert (aggregate_type, aggregate_id, payload) rows in one transaction, as the application would."""
    engine = sa.create_engine(url)
    table = create_outbox(engine)
    if rows:
        with engine.begin() as conn:
            values = [{"aggregate_type": t, "aggregate_id": i, "payload": p} for t, i, p in rows]
            conn.execute(sa.insert(table), values)
    engine.dispose()


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def execute(url: str, sql: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


def outbox_config(url: str, **overrides: Any) -> OutboxSourceConfig:
    values: dict[str, Any] = {
        "kind": "outbox",
        "name": "hukou",
        "department": "public_security",
        "url": url,
        "batch_size": 50,
        "poll_interval": 0.2,
        "delivery_timeout": 10.0,
        **overrides,
    }
    return OutboxSourceConfig.model_validate(values)


@contextmanager
def running(config: Any, settings: Settings) -> Iterator[tuple[threading.Event, dict[str, RunReport]]]:
    """The source in a thread until the block ends (then stopped and joined)."""
    stop = threading.Event()
    reports: dict[str, RunReport] = {}
    thread = threading.Thread(target=lambda: reports.update(x=run_source(config, settings, stop)), daemon=True)
    thread.start()
    try:
        yield stop, reports
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the source did not stop within 30 s"


def cli_env(settings: Settings, state_dir: Path) -> dict[str, str]:
    return process_env(settings, ONCEONLY_STATE_DIR=str(state_dir))


def source_process(config: Path, settings: Settings, state_dir: Path, *extra: str) -> subprocess.Popen[str]:
    """``onceonly source run CONFIG`` as its own process (so it can be killed for real)."""
    return subprocess.Popen(
        [sys.executable, "-m", "onceonly", "source", "run", str(config), *extra],
        env=cli_env(settings, state_dir),
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def kill_mid_run_and_finish(config: Path, settings: Settings, state_dir: Path, progress: Callable[[], int]) -> int:
    """Run ``source run``, SIGKILL it once ``progress()`` reaches 200, then finish with ``--once``.

    Returns the progress seen at the kill (callers assert it is below their total: killed mid-run, not after).
    """
    with _killed_then_finished(config, settings, state_dir) as first:
        done = _wait_for(first, progress, 200)
    return done


def kill_between_ack_and_mark_and_finish(
    config: Path, settings: Settings, state_dir: Path, url: str, published: Callable[[], int]
) -> tuple[int, int]:
    """Run ``source run``; once 200 rows are marked sent, hold a lock that lets the source read and publish its
    next batch but not mark it, SIGKILL it there (acknowledged by the broker, not marked: the crash window), then
    finish with ``--once``. Returns (rows marked, records ``published()``) at the kill."""
    marked = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL"
    with _killed_then_finished(config, settings, state_dir) as first:
        _wait_for(first, lambda: int(query(url, marked)[0][0]), 200)
        with marking_blocked(url):
            deadline = time.monotonic() + 30
            seen = (-1, -1)
            while (now := (int(query(url, marked)[0][0]), published())) != seen or now[1] <= now[0]:
                assert first.poll() is None and time.monotonic() < deadline, "the source never published unmarked rows"
                seen = now
                time.sleep(0.2)  # two equal looks in a row: the source waits on the lock, nothing is in flight
            os.kill(first.pid, signal.SIGKILL)  # while the lock is held: the mark it waits for never commits
            first.wait(10)
    return now


@contextmanager
def _killed_then_finished(config: Path, settings: Settings, state_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """``source run`` for the block, SIGKILLed when it ends (unless the block did), then ``--once`` to finish."""
    first = source_process(config, settings, state_dir)
    try:
        yield first
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
    again = source_process(config, settings, state_dir, "--once")
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 0, output


@contextmanager
def marking_blocked(url: str) -> Iterator[None]:
    """A writer's lock on the outbox: the source still reads it (and publishes), but its UPDATE of sent_at waits."""
    if sa.make_url(url).get_backend_name() == "sqlite":
        db = sqlite3.connect(str(sa.make_url(url).database), isolation_level=None, timeout=30)
        try:
            db.execute("BEGIN IMMEDIATE")  # readers go on, a second writer waits
            yield
        finally:
            db.close()
        return
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("LOCK TABLE outbox IN SHARE MODE")  # SELECT goes on, UPDATE waits
            yield
    finally:
        engine.dispose()


def _wait_for(process: subprocess.Popen[str], progress: Callable[[], int], at_least: int) -> int:
    deadline = time.monotonic() + 60
    while (done := progress()) < at_least:
        assert process.poll() is None and time.monotonic() < deadline, "the source did not start publishing"
        time.sleep(0.02)
    return done


LEGACY = "CREATE TABLE rk_jbxx (sfzhm VARCHAR(18) PRIMARY KEY, xm VARCHAR(40), xb INTEGER, csrq DATE, dz VARCHAR(200))"
COLUMNS = {"sfzhm": "id_number", "xm": "name", "xb": "sex", "csrq": "birth_date", "dz": "address"}


def legacy_rows(url: str, n: int, start: int = 0) -> None:
    """The household registry's own table: its own column names, sex as an integer column."""
    rows = []
    for k in range(start, start + n):
        key = person_id(k)
        rows.append({"k": key, "n": f"张{k}", "b": date(int(key[6:10]), int(key[10:12]), int(key[12:14]))})
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO rk_jbxx VALUES (:k, :n, 1, :b, '朝阳区1号')"), rows)
    engine.dispose()


HEADER = ["uscc", "name", "legal_representative", "address", "status", "registered_on", "district_code"]


def uscc(n: int) -> str:
    first17 = f"91110105{n:09d}"
    return first17 + uscc_check_char(first17)


def enterprise(n: int, **overrides: str) -> dict[str, str]:
    """A row of the market regulator's CSV export of enterprises."""
    row = {
        "uscc": uscc(n),
        "name": f"北京第{n}有限公司",
        "legal_representative": "李明",
        "address": f"朝阳区{n}号",
        "status": "active",
        "registered_on": "2015-03-01",
        "district_code": "",
    }
    return {**row, **overrides}


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, HEADER)
        writer.writeheader()
        writer.writerows(rows)
