"""Receipts end up as per-change status in Redis; Redis being down stops neither applying nor, later, tracking."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from redis import Redis
from subscriber_kit import HOLDER, Broker, person_change, running, subscriber_config, wait_until

from onceonly.stack.components import start_redis
from onceonly.stack.process import free_port, stop
from onceonly.testing import Samples, process_env, prometheus_samples, sample
from services.tracker import Tracker, status, trace


def test_applying_goes_on_without_redis_and_the_tracker_catches_up(
    sqlite_store: str, broker: Broker, tmp_path: Path
) -> None:
    redis_port = free_port()  # nothing listens here yet: Redis is down
    settings = broker.settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{redis_port}/0"})
    tracker = Tracker(settings, broker.codec, backoff_max=0.5)
    stop_tracker = threading.Event()
    thread = threading.Thread(target=tracker.run, args=(stop_tracker,), daemon=True)
    thread.start()
    records = [person_change(f"P{p}", 1, "c") for p in range(30)] + [person_change("P0", 1, "c")]
    redis = None
    try:
        with running(subscriber_config(sqlite_store), broker.settings, broker.codec) as worker:
            broker.publish(records)
            wait_until(lambda: worker.stats["applied"] == 30 and worker.stats["skipped_duplicate"] == 1, 30, "applies")
        wait_until(lambda: tracker.stats["retries"] >= 2, 20, "the tracker to retry while Redis is down")
        assert tracker.stats["folded"] == 0

        redis = start_redis(tmp_path, redis_port)
        wait_until(lambda: tracker.stats["folded"] >= 31, 30, "the tracker to catch up")
    finally:
        stop_tracker.set()
        thread.join(10)
        if redis is not None:
            try:
                p0 = status(records[0]["event_id"], settings)
                history = trace("person", "P0", settings)
                p29 = status(records[29]["event_id"], settings)
            finally:
                stop(redis)
    assert not thread.is_alive()
    assert list(p0) == [HOLDER] and p0[HOLDER]["outcome"] == "applied", "a later duplicate does not hide the apply"
    assert p0[HOLDER]["entity_key"] == "P0" and p0[HOLDER]["authority_version"] == 1
    assert [e["outcome"] for e in history] == ["applied", "skipped_duplicate"]
    assert p29[HOLDER]["outcome"] == "applied"


def test_the_tracker_command_folds_receipts_logs_json_lines_and_stops_on_sigterm(
    sqlite_store: str, broker: Broker, tmp_path: Path
) -> None:
    redis_url = "redis://127.0.0.1:6379/0"
    settings = broker.settings.model_copy(update={"redis_url": redis_url})
    env = process_env(settings, ONCEONLY_REDIS_URL=redis_url, ONCEONLY_STATE_DIR=str(tmp_path / "state"))
    log, port = tmp_path / "tracker.log", free_port()
    cmd = [sys.executable, "-m", "services.tracker", "--metrics-port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    records = [person_change(f"T{p}", 1, "c") for p in range(5)]
    try:
        with running(subscriber_config(sqlite_store), broker.settings, broker.codec) as worker:
            broker.publish(records)
            wait_until(lambda: worker.stats["applied"] == 5, 30, "applies")
        wait_until(lambda: all(status(r["event_id"], settings) for r in records), 60, "the tracker to fold receipts")
        lag = {"group": settings.topic("tracker"), "topic": settings.topic("receipts")}

        def scraped() -> Samples:
            return prometheus_samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)

        wait_until(lambda: sample(scraped(), "onceonly_consumer_lag", **lag) == 0, 10, "the tracker's own lag")
        page = scraped()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
    assert code == 0, log.read_text()
    assert status(records[4]["event_id"], settings)[HOLDER]["outcome"] == "applied"
    assert sample(page, "onceonly_receipts_folded_total", holder=HOLDER) == 5
    assert (sample(page, "onceonly_consumer_rebalances_total", service="tracker") or 0) >= 1
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "message", "event_id", "holder"} <= set(doc) for doc in lines)


def test_a_redis_that_comes_back_empty_gets_the_whole_fold_again(
    sqlite_store: str, broker: Broker, tmp_path: Path
) -> None:
    """Redis restarted without persistence (the stack's own runs so): the group's committed offsets say the
    receipts were folded, but not into this Redis. The running tracker notices its positions gone and folds the
    receipts topic again; a tracker started later on an empty Redis does the same from the start."""
    redis_port = free_port()
    settings = broker.settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{redis_port}/0"})
    records = [person_change(f"E{p}", 1, "c") for p in range(12)]

    def all_tracked() -> bool:
        return all(status(r["event_id"], settings).get(HOLDER, {}).get("outcome") == "applied" for r in records)

    def run_tracker() -> tuple[Tracker, threading.Event, threading.Thread]:
        tracker, stop_tracker = Tracker(settings, broker.codec, backoff_max=0.5), threading.Event()
        thread = threading.Thread(target=tracker.run, args=(stop_tracker,), daemon=True)
        thread.start()
        return tracker, stop_tracker, thread

    (tmp_path / "first").mkdir()
    server = start_redis(tmp_path / "first", redis_port)
    tracker, stop_tracker, thread = run_tracker()
    try:
        with running(subscriber_config(sqlite_store), broker.settings, broker.codec) as worker:
            broker.publish(records)
            wait_until(lambda: worker.stats["applied"] == 12, 30, "applies")
        wait_until(all_tracked, 30, "the fold")
        stop(server)  # and back, empty
        (tmp_path / "second").mkdir()
        server = start_redis(tmp_path / "second", redis_port)
        assert not all_tracked()
        wait_until(all_tracked, 30, "the running tracker to fold everything again")
        assert tracker.stats["refolds"] >= 1
    finally:
        stop_tracker.set()
        thread.join(10)
    assert not thread.is_alive()

    Redis.from_url(
        f"redis://127.0.0.1:{redis_port}/0"
    ).flushall()  # a tracker that starts on an empty Redis: positions from Redis, not the group
    tracker, stop_tracker, thread = run_tracker()
    try:
        wait_until(all_tracked, 30, "a new tracker to fold everything again")
    finally:
        stop_tracker.set()
        thread.join(10)
        stop(server)
    assert tracker.stats["folded"] >= len(records)
