"""The holder lock (real Redis) and the replay ledger's chain under concurrent writers (embedded broker); the window
parser."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from onceonly.settings import Settings
from services.distributor.ledger import verify
from services.operator.holder_lock import HolderLock, Owner, redis_client
from services.operator.replay_errors import BadWindow, HolderBusy
from services.operator.replay_ledger import ReplayLedger, entry
from services.operator.time_window import Window, parse_duration, parse_time


def test_the_lock_names_its_owner_and_only_the_owner_releases_it(settings: Settings, clean_redis: None) -> None:
    alice = HolderLock.for_holder(settings, "tax", Owner.me("replay", "op-a", "alice"), ttl=5)
    bob = HolderLock.for_holder(settings, "tax", Owner.me("replay", "op-b", "bob"), ttl=5)
    other_holder = HolderLock.for_holder(settings, "hrss", Owner.me("replay", "op-c", "carol"), ttl=5)
    with alice:
        with pytest.raises(HolderBusy) as refused:
            bob.acquire()
        assert "holder tax is busy: replay op-a by alice" in str(refused.value)
        assert not bob.release(), "bob cannot release alice's lock"
        assert alice.holder() is not None and alice.holder().operator == "alice"  # type: ignore[union-attr]
        with other_holder:  # another holder is not blocked
            pass
    assert alice.holder() is None
    with bob:  # free again once alice released it
        assert bob.holder().operator == "bob"  # type: ignore[union-attr]


def test_the_lock_is_kept_alive_while_held_and_lapses_when_its_owner_dies(
    settings: Settings, clean_redis: None
) -> None:
    held = HolderLock.for_holder(settings, "tax", Owner.me("replay", "op-a", "alice"), ttl=0.6)
    with held:
        time.sleep(1.5)  # well past the ttl: the keeper renewed it
        assert held.holder() is not None and not held.lost.is_set()
    dead = HolderLock.for_holder(settings, "tax", Owner.me("replay", "op-d", "dave"), ttl=0.5)
    assert dead.try_acquire()  # taken, then its process "dies" (no keeper, never released)
    other = HolderLock.for_holder(settings, "tax", Owner.me("replay", "op-e", "erin"), ttl=5)
    with pytest.raises(HolderBusy):
        other.acquire()
    time.sleep(0.7)
    with other:
        assert other.holder().operator == "erin"  # type: ignore[union-attr]


def test_the_lock_needs_redis(settings: Settings) -> None:
    from onceonly.errors import ConfigError

    with pytest.raises(ConfigError, match="no Redis configured"):
        redis_client(settings.model_copy(update={"redis_url": None}))


@pytest.mark.broker
def test_concurrent_writers_keep_one_unbroken_chain(topics: Settings, clean_redis: None) -> None:
    """Two operators' processes append at once, and one loses the remembered head mid-way: the chain stays whole."""
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        ledger = ReplayLedger(topics)
        try:
            for i in range(6):
                ledger.append([_entry(name, i, n) for n in range(3)])
                if name == "a" and i == 2:  # as if a writer died between its write and remembering the head
                    client = redis.Redis.from_url(topics.redis_url or "")
                    client.delete(ledger.head_key)
                    client.close()
        except BaseException as e:
            errors.append(e)
        finally:
            ledger.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    entries = list(ReplayLedger(topics).entries())
    result = verify(entries)
    assert result.entries == 36 and result.seq == 36
    assert {e["operation_id"] for _, e in entries} == {"op-a", "op-b"}


def _entry(name: str, i: int, n: int) -> dict[str, object]:
    return entry(
        operation_id=f"op-{name}",
        action="replay",
        kind="delivered",
        operator=name,
        holder="tax",
        entity_type="person",
        entity_key=f"{name}-{i}-{n}",
        at=int(time.time() * 1000),
        fields=["id_number"],
    )


def test_durations_and_times() -> None:
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration("1d12h") == timedelta(days=1, hours=12)
    assert parse_duration("90m") == timedelta(minutes=90)
    for bad in ("", "2", "h", "2x", "-1h", "0s"):
        with pytest.raises(BadWindow):
            parse_duration(bad)
    assert parse_time("2025-06-01T14:30+08:00") == datetime(2025, 6, 1, 6, 30, tzinfo=UTC)
    assert parse_time("2025-06-01").tzinfo is not None  # a date is local midnight
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    window = Window.of(by_duration="2h", now=now)
    assert window.start == now - timedelta(hours=2) and window.end is None
    assert Window.of(from_offset=5, now=now).describe() == "from offset 5 to the end"
    with pytest.raises(BadWindow, match="is in the future"):
        Window.of(start="2025-06-01T12:00:01+00:00", now=now)


@pytest.mark.broker
def test_offsets_by_time_are_right_on_this_broker(topics: Settings) -> None:
    """Three bursts a moment apart: "from time T" starts at the first record at or after T in each partition.

    With ``broker_quirks: tansu`` the partitions are scanned. The embedded broker's own offsets-for-times answer is
    right for a time inside the data but says offset 0 for a time after the last record and for an empty partition
    (Kafka says "none"), so "replay the last 2 hours" of a quiet topic would replay everything: hence the scan. On
    Apache Kafka (``none``) the broker's time index is asked.
    """
    from confluent_kafka import Producer

    from onceonly.kafka import confluent_producer_config
    from services.operator.time_window import offsets_at_times

    topic = topics.topic("change.person")
    producer = Producer(confluent_producer_config(topics))
    marks = []
    for _ in range(3):
        time.sleep(0.05)
        marks.append(int(time.time() * 1000))
        time.sleep(0.05)
        for i in range(20):
            producer.produce(topic, key=f"k{i}".encode(), value=b"x", partition=0, timestamp=marks[-1] + 10 + i)
        producer.flush(10)
    tps = [(topic, 0), (topic, 1)]
    found = offsets_at_times(topics, tps, [*marks, marks[-1] + 1000])
    assert [f[(topic, 0)] for f in found] == [0, 20, 40, None]
    assert all(f[(topic, 1)] is None for f in found)  # an empty partition has nothing at or after any time
    if topics.broker_quirks == "tansu":
        asked = offsets_at_times(topics.model_copy(update={"broker_quirks": "none"}), tps, [*marks, marks[-1] + 1000])
        answers = [(f[(topic, 0)], f[(topic, 1)]) for f in asked]
        assert answers != [(o, None) for o in (0, 20, 40, None)], "the broker's answer is right now: drop the scan"
