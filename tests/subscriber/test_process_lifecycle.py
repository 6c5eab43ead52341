"""The subscriber as its own process: killed mid-batch it loses nothing and applies nothing twice; SIGTERM is quick."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from subscriber_kit import (
    HOLDER,
    Broker,
    TcpProxy,
    person_change,
    query,
    spawn_subscriber,
    table,
    wait_until,
    write_config,
)

from services.subscriber.receipts import counted_as
from services.subscriber.supervisor import EXIT_CUT
from services.tracker import ReceiptStore

PEOPLE, VERSIONS = 200, 10


def kill_between_apply_and_commit(
    proc: subprocess.Popen[bytes], applied: Callable[[], int], broker: Broker
) -> tuple[int, int]:
    """Freeze the worker (SIGSTOP) right after a transaction shows up in the database; if its offsets are not
    committed yet, that is the moment to SIGKILL it. Returns (applied, committed) at the kill."""
    seen = applied()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = applied()
        if now == seen:
            time.sleep(0.001)
            continue
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.3)  # let a commit request already on the wire land before looking
        committed = broker.committed()
        now = applied()
        if committed < now:
            proc.kill()
            return now, committed
        seen = now
        proc.send_signal(signal.SIGCONT)
    raise AssertionError("never caught the worker between a database commit and its offset commit")


def stop_with_sigterm(proc: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    return time.monotonic() - started


# Once in many runs the broker refused the stopping worker's last commit (it had been assigned 0.24 s earlier):
# the records are then read again and skipped as duplicates, nothing lost, but the count differs. One rerun.
@pytest.mark.flaky(reruns=1)
def test_sigkill_mid_batch_then_sigterm_mid_stream_then_restart_applies_every_change_exactly_once(
    sqlite_store: str, broker: Broker, tmp_path: Path, redis_keys: None, engine: str
) -> None:
    total = PEOPLE * VERSIONS
    broker.publish(
        [person_change(f"P{p:03d}", v, "c" if v == 1 else "u") for v in range(1, VERSIONS + 1) for p in range(PEOPLE)]
    )
    config = write_config(tmp_path / "onceonly.yaml", sqlite_store, batch_size=250, engine=engine)
    log = tmp_path / "subscriber.log"

    def applied() -> int:
        return int(query(sqlite_store, "SELECT count(*) FROM apply_log")[0][0])

    first = spawn_subscriber(config, broker.settings, log)
    try:
        wait_until(lambda: applied() > 0, 60, "the first batch")
        at_kill, committed_at_kill = kill_between_apply_and_commit(first, applied, broker)
    finally:
        first.kill()
        first.wait(10)
    assert committed_at_kill < at_kill < total, "the kill must land after a transaction and before its commit"

    # SIGTERM while the backlog is being worked off: what it applied, it commits, and it is gone within 10 s.
    second = spawn_subscriber(config, broker.settings, log)
    try:
        wait_until(lambda: applied() > at_kill, 60, "the second worker to apply")
    finally:
        took = stop_with_sigterm(second)
    assert second.returncode == 0, log.read_text()[-2000:]
    assert took < 10, f"SIGTERM took {took:.1f}s"
    assert broker.committed() == applied(), "a change was applied and not committed (or committed and not applied)"

    third = spawn_subscriber(config, broker.settings, log)
    try:
        wait_until(lambda: applied() >= total, 60, "every change applied after the restarts")
        wait_until(lambda: broker.committed() == total, 30, "every offset committed")
    finally:
        stop_with_sigterm(third)
    assert third.returncode == 0, log.read_text()[-2000:]

    assert table(sqlite_store) == [
        (f"P{p:03d}", f"name v{VERSIONS}", f"address v{VERSIONS}", None, "normal", VERSIONS, False, None)
        for p in range(PEOPLE)
    ]
    log_rows = query(sqlite_store, "SELECT sjid, count(*) FROM apply_log GROUP BY sjid HAVING count(*) > 1")
    assert log_rows == [], "a change was applied twice"
    assert applied() == total
    # What was applied but not committed is read again and never applied again: each change of the lost batch
    # (also an older version of a person overtaken in that same batch) is answered as a repeat of its apply, so
    # every change has its "applied", whether or not the lost batch's receipts were out before the kill.
    redelivered = at_kill - committed_at_kill
    receipts = broker.receipts(total, settle=1.0)
    outcomes = Counter(r["outcome"] for r in receipts)
    repeats = [r for r in receipts if r["already_applied_at"] is not None]
    assert (outcomes["skipped_duplicate"], outcomes["skipped_stale"]) == (redelivered, 0)
    assert len(repeats) == redelivered and {r["outcome"] for r in repeats} == {"skipped_duplicate"}
    everything = {r["event_id"] for r in receipts}
    assert len(everything) == total
    assert {r["event_id"] for r in receipts if counted_as(r)[0] == "applied"} == everything, "an apply was lost"
    twice = [e for e, n in Counter(r["event_id"] for r in receipts if r["outcome"] == "applied").items() if n > 1]
    assert twice == [], "an 'applied' receipt counts a real apply: a repeat is not one"
    # The tracker learns it too: every change is "applied" at the holder, at the time the store applied it.
    store = ReceiptStore.from_url(broker.settings.redis_url or "", broker.settings.topic_prefix)
    store.fold(receipts)
    pipe = store.client.pipeline(transaction=False)
    for event in sorted(everything):
        pipe.hget(f"{broker.settings.topic_prefix}receipt:{event}", HOLDER)
    folded = [json.loads(value) for value in pipe.execute()]
    assert Counter(f["outcome"] for f in folded) == {"applied": total}
    by_event = dict(zip(sorted(everything), folded, strict=True))
    for r in repeats:  # the time of the apply, not of the redelivery (seconds later, by another worker)
        redelivered_at = int(r["applied_at"].timestamp() * 1000)
        assert int(r["already_applied_at"].timestamp() * 1000) < redelivered_at
        assert by_event[r["event_id"]]["at"] < redelivered_at


def test_sigterm_while_the_sink_is_down_exits_fast_and_commits_nothing_unapplied(
    sqlite_store: str, broker: Broker, tmp_path: Path, engine: str
) -> None:
    # Nothing listens on this port: every delivery attempt fails, so the worker sits in its pause-and-retry loop.
    from onceonly.stack.process import free_port

    config = write_config(
        tmp_path / "onceonly.yaml",
        sqlite_store,
        engine=engine,
        sink={"kind": "http", "url": f"http://127.0.0.1:{free_port()}/changes", "retries": 0, "timeout": 1.0},
    )
    broker.publish([person_change(f"P{p}", 1, "c") for p in range(20)])
    log = tmp_path / "subscriber.log"
    proc = spawn_subscriber(config, broker.settings, log)
    try:
        wait_until(lambda: "pausing" in log.read_text(), 30, "the worker to pause on the dead sink")
    finally:
        took = stop_with_sigterm(proc)
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert took < 10, f"SIGTERM took {took:.1f}s"
    assert broker.committed() == 0, "an offset was committed past an unapplied change"


def test_a_worker_stuck_in_a_hung_database_is_cut_after_the_grace_period_and_loses_nothing(
    postgresql_store: str, broker: Broker, tmp_path: Path
) -> None:
    """No client timeout covers a database that stops answering mid-statement; the supervisor's cut does."""
    real = make_url(postgresql_store)
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
    via_proxy = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    config = write_config(tmp_path / "onceonly.yaml", via_proxy, shutdown_grace=2.0)
    log = tmp_path / "subscriber.log"

    def applied() -> int:
        return int(query(postgresql_store, "SELECT count(*) FROM apply_log")[0][0])

    broker.publish([person_change(f"P{p:03d}", 1, "c") for p in range(100)])
    first = spawn_subscriber(config, broker.settings, log)
    try:
        wait_until(lambda: applied() == 100, 60, "the first changes")
        proxy.frozen.set()
        broker.publish([person_change(f"P{p:03d}", 2) for p in range(100)])
        time.sleep(2)  # the worker is now waiting on the frozen connection
        took = stop_with_sigterm(first)
    finally:
        first.kill()
        proxy.frozen.clear()
    assert first.returncode == EXIT_CUT, log.read_text()[-2000:]
    assert took < 10 and "did not stop within 2s" in log.read_text()

    second = spawn_subscriber(config, broker.settings, log)
    try:
        wait_until(lambda: broker.committed() == 200, 60, "everything after the restart")
    finally:
        stop_with_sigterm(second)
        proxy.down()
    assert table(postgresql_store) == [
        (f"P{p:03d}", "name v2", "address v2", None, "normal", 2, False, None) for p in range(100)
    ]
    assert query(postgresql_store, "SELECT count(*), count(DISTINCT sjid) FROM apply_log") == [(200, 200)]
