"""The outbox source on SQLite and PostgreSQL: in order, marked sent after the ack, dead letters, faults."""

from __future__ import annotations

import json
import threading
import time

import pytest
from publisher.change_kit import person_change, person_id, read_topic
from source_kit import insert_outbox, outbox_config, payload, query, running

from connectors.sources import run_source
from onceonly.metrics import SOURCE_HEARTBEAT, SOURCE_RETRIES
from onceonly.settings import Settings
from onceonly.stack.process import free_port

pytestmark = pytest.mark.broker


def test_rows_are_published_in_order_and_marked_sent(topics: Settings, app_db: str) -> None:
    rows = [("person", person_id(k), payload(person_change(person_id(k)))) for _ in range(3) for k in range(40)]
    insert_outbox(app_db, rows)

    report = run_source(outbox_config(app_db), topics, threading.Event(), once=True)

    assert report.published == 120
    records = read_topic(topics, "change.person", expect=120)
    assert len({r["event_id"] for _, r, _ in records}) == 120
    versions: dict[str, list[int]] = {}
    for key, record, _ in records:
        assert record["source"]["connector"] == "outbox" and record["authority"] == "public_security"
        assert record["source"]["position"] == str(record["authority_version"])  # version defaults to the row id
        versions.setdefault(key, []).append(record["authority_version"])
    assert all(v == sorted(v) and len(v) == 3 for v in versions.values())
    assert query(app_db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == [(0,)]
    assert run_source(outbox_config(app_db), topics, threading.Event(), once=True).published == 0


def test_bad_rows_are_dead_lettered_with_the_reason_and_the_rest_flow(topics: Settings, app_db: str) -> None:
    bad_id = person_id(2)[:-1] + ("0" if person_id(2)[-1] != "0" else "1")
    insert_outbox(
        app_db,
        [
            ("person", person_id(1), payload(person_change(person_id(1)))),
            ("person", person_id(2), "{broken"),
            ("person", bad_id, payload(person_change(bad_id))),
            ("enterprise", "91110000100000000X", json.dumps({"op": "c", "event_type": "created"})),
            ("person", person_id(3), "[1, 2]"),
            ("person", person_id(4), payload(person_change(person_id(4), version=1, sex=None))),
            ("person", person_id(5), payload(person_change(person_id(5)))),
        ],
    )

    report = run_source(outbox_config(app_db), topics, threading.Event(), once=True)

    assert (report.published, report.rejected) == (2, 5)
    assert [k for k, _, _ in read_topic(topics, "change.person", expect=2)] == [person_id(1), person_id(5)]
    dead = dict(query(app_db, "SELECT outbox_id, COALESCE(field, '') || ': ' || reason FROM outbox_dead_letter"))
    assert "payload: not JSON" in dead[2]
    assert "after.id_number: check character" in dead[3]
    assert "public_security is not the authority for enterprise" in dead[4]
    assert "payload: must be a JSON object" in dead[5]
    assert "after.sex: must not be null" in dead[6]
    assert query(app_db, "SELECT id FROM outbox ORDER BY id") == [(1,), (7,)]  # moved, not copied


# Once in many runs the embedded broker answered the recovered run with PRODUCER_FENCED for a producer id it had
# just issued (a Tansu quirk, not Apache Kafka's behaviour); one rerun, reported as such, keeps that visible.
@pytest.mark.flaky(reruns=1)
def test_broker_unreachable_retries_with_backoff_and_marks_nothing(topics: Settings, app_db: str) -> None:
    """A real fault: nothing listens on the broker port. Then the broker is back and everything goes out."""
    insert_outbox(app_db, [("person", person_id(k), payload(person_change(person_id(k)))) for k in range(10)])
    away = topics.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    config = outbox_config(app_db, name="hukou-away", delivery_timeout=1.0, retry_backoff_max=0.5)
    retries = SOURCE_RETRIES.labels("hukou-away")
    before = retries._value.get()

    with running(config, away) as (_, reports):
        deadline = time.monotonic() + 20
        while retries._value.get() < before + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert retries._value.get() >= before + 2
    assert reports["x"].retries >= 2 and "not acknowledged" in str(reports["x"].last_error)
    assert query(app_db, "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL") == [(0,)]

    assert run_source(config, topics, threading.Event(), once=True).published == 10
    assert len(read_topic(topics, "change.person", expect=10)) == 10


def test_a_quiet_source_sends_heartbeats(topics: Settings, app_db: str) -> None:
    insert_outbox(app_db, [])
    config = outbox_config(app_db, name="hukou-quiet", heartbeat_interval=0.3, poll_interval=0.1)
    with running(config, topics):
        time.sleep(1.5)
    beats = [json.loads(value) for _, value, _ in read_topic(topics, "source.heartbeats", expect=2)]
    assert len(beats) >= 2
    assert beats[0]["source"] == "hukou-quiet" and beats[0]["status"] == "idle" and beats[0]["kind"] == "outbox"
    assert SOURCE_HEARTBEAT.labels("hukou-quiet")._value.get() > time.time() - 5


def test_postgresql_notify_wakes_the_source(topics: Settings, postgres_db: str) -> None:
    insert_outbox(postgres_db, [])
    config = outbox_config(postgres_db, poll_interval=30.0)  # polling alone would take up to 30 s
    with running(config, topics):
        time.sleep(1.0)  # the source is now waiting on LISTEN
        start = time.monotonic()
        insert_outbox(postgres_db, [("person", person_id(1), payload(person_change(person_id(1))))])
        while query(postgres_db, "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL") != [(1,)]:
            assert time.monotonic() - start < 5, "not woken by NOTIFY"
            time.sleep(0.05)
    assert len(read_topic(topics, "change.person", expect=1)) == 1
