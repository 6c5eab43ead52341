"""Two workers in one consumer group share the partitions and end in the same table as one worker would."""

from __future__ import annotations

from subscriber_kit import Broker, person_change, query, running, subscriber_config, table, wait_until

PEOPLE, VERSIONS = 150, 4


def test_two_workers_share_the_partitions_and_apply_everything_once(postgresql_store: str, broker: Broker) -> None:
    config = subscriber_config(postgresql_store, batch_size=50)
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
