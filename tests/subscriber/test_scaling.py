"""Two workers in one consumer group share the partitions and end in the same table as one worker would; a worker
that stops leaves the group at once."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition
from subscriber_kit import HOLDER, SOURCES, Broker, person_change, query, running, subscriber_config, table, wait_until

from onceonly.kafka import confluent_config

PEOPLE, VERSIONS = 150, 4


def test_two_workers_share_the_partitions_and_apply_everything_once(
    postgresql_store: str, broker: Broker, engine: str
) -> None:
    config = subscriber_config(postgresql_store, batch_size=50, engine=engine)
    total = PEOPLE * VERSIONS
    with (
        running(config, broker.settings, broker.codec) as one,
        running(config, broker.settings, broker.codec) as two,
    ):
        wait_until(
            lambda: bool(one.assigned) and bool(two.assigned) and len(one.assigned | two.assigned) == 6,
            30,
            "both workers to own partitions",
        )
        assert not one.assigned & two.assigned
        broker.publish(
            [person_change(f"P{p:03d}", v, "c" if v == 1 else "u") for v in range(1, 5) for p in range(PEOPLE)]
        )
        wait_until(lambda: one.stats["applied"] + two.stats["applied"] >= total, 30, "every change applied")
    assert one.stats["applied"] > 0 and two.stats["applied"] > 0
    assert one.stats["applied"] + two.stats["applied"] == total
    assert table(postgresql_store) == [
        (f"P{p:03d}", f"name v{VERSIONS}", f"address v{VERSIONS}", None, "normal", VERSIONS, False, None)
        for p in range(PEOPLE)
    ]
    assert query(postgresql_store, "SELECT count(*), count(DISTINCT sjid) FROM apply_log") == [(total, total)]


def test_a_stopped_worker_leaves_its_group_at_once(sqlite_store: str, broker: Broker, engine: str) -> None:
    """An offset reset right after a worker stopped is accepted: a worker still counted as a member would have it
    refused (UNKNOWN_MEMBER_ID), and would hold up the next worker's join until its session timed out."""
    with running(subscriber_config(sqlite_store, engine=engine), broker.settings, broker.codec) as worker:
        wait_until(lambda: bool(worker.assigned), 60, "the worker's partitions")
    settings = broker.settings
    outsider = Consumer(confluent_config(settings, **{"group.id": f"{settings.topic_prefix}subscriber.{HOLDER}"}))
    try:
        outsider.commit(offsets=[TopicPartition(settings.topic(SOURCES[0]), 0, 0)], asynchronous=False)
    finally:
        outsider.close()
