"""Receipts end up as per-change status in Redis; Redis being down stops neither applying nor, later, tracking."""

from __future__ import annotations

import threading
from pathlib import Path

from subscriber_kit import HOLDER, Broker, person_change, running, subscriber_config, wait_until

from onceonly.stack.components import start_redis
from onceonly.stack.process import free_port, stop
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
