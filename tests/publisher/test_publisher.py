"""The SDK against the real broker and registry: acknowledged, keyed, validated, deterministic, sync and async."""

from __future__ import annotations

import asyncio
import time
from datetime import date

import pytest
from change_kit import GOOD_ID, person_change, person_id, read_topic
from confluent_kafka import KafkaError

from onceonly import AsyncPublisher, Publisher
from onceonly.publisher import BatchFailed, PublishFailed
from onceonly.settings import Settings
from onceonly.stack.process import free_port
from onceonly.standard import RecordInvalid, event_id

pytestmark = pytest.mark.broker


def test_publish_returns_after_the_ack_with_defaults_filled(topics: Settings) -> None:
    with Publisher(topics) as publisher:
        result = publisher.publish(person_change(GOOD_ID, 7))
    assert result.event_id == event_id("public_security", "person", GOOD_ID, 7)
    assert result.offset >= 0
    [(key, record, headers)] = read_topic(topics, "change.person", expect=1)
    assert key == GOOD_ID
    assert record["authority"] == "public_security"  # from departments.yaml
    assert record["event_id"] == result.event_id
    assert record["source"]["connector"] == "sdk"
    assert abs(record["recorded_at"].timestamp() - time.time()) < 60
    assert record["after"]["birth_date"] == date(1949, 12, 31)
    assert headers["event_id"] == result.event_id.encode()


def test_invalid_changes_name_the_field_and_send_nothing(topics: Settings) -> None:
    bad = [
        (person_change(GOOD_ID[:-1] + "1", 1), "after.id_number", "check character"),
        ({**person_change(), "authority": "tax"}, "authority", "not the authority for person"),
        ({**person_change(), "entity_type": "unicorn"}, "entity_type", "unicorn"),
        (person_change(adress="x"), "after.adress", "not a field"),
        ({**person_change(), "authority_version": 0}, "authority_version", "positive"),
        ({**person_change(), "event_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}, "event_id", "uuid5"),
        ({**person_change(), "op": "x"}, "op", "not one of"),
        ({k: v for k, v in person_change().items() if k != "authority_version"}, "authority_version", "required"),
    ]
    with Publisher(topics) as publisher:
        for change, field, reason in bad:
            with pytest.raises(RecordInvalid) as e:
                publisher.publish(change)
            assert (e.value.field, reason in e.value.reason) == (field, True), e.value
        publisher.publish(person_change(person_id(1)))  # a marker: the only record on the topic
    assert [key for key, _, _ in read_topic(topics, "change.person", expect=1)] == [person_id(1)]


def test_a_retried_publish_is_the_same_event(topics: Settings) -> None:
    with Publisher(topics) as publisher:
        first = publisher.publish(person_change(GOOD_ID, 3))
        again = publisher.publish(person_change(GOOD_ID, 3))
    assert first.event_id == again.event_id
    records = read_topic(topics, "change.person", expect=2)
    assert {r["event_id"] for _, r, _ in records} == {first.event_id}


def test_publish_many_keeps_each_entity_in_order(topics: Settings) -> None:
    changes = [person_change(person_id(k), v) for v in range(1, 11) for k in range(30)]
    with Publisher(topics) as publisher:
        results = publisher.publish_many(changes)
    assert len({r.event_id for r in results}) == 300
    records = read_topic(topics, "change.person", expect=300)
    assert len(records) == 300
    versions: dict[str, list[int]] = {}
    for key, record, _ in records:
        versions.setdefault(key, []).append(record["authority_version"])
    assert all(v == list(range(1, 11)) for v in versions.values()) and len(versions) == 30


def test_one_invalid_change_stops_the_whole_batch(topics: Settings) -> None:
    changes = [person_change(person_id(k)) for k in range(5)]
    changes[3]["after"]["birth_date"] = "2999-01-01"
    with Publisher(topics) as publisher, pytest.raises(RecordInvalid) as e:
        publisher.publish_many(changes)
    assert e.value.field == "[3].after.birth_date"
    assert read_topic(topics, "change.person", expect=0, timeout=3) == []


def test_async_publisher(topics: Settings) -> None:
    async def main() -> list[str]:
        async with AsyncPublisher(topics) as publisher:
            one = await publisher.publish(person_change(GOOD_ID, 1))
            many = await publisher.publish_many([person_change(person_id(k)) for k in range(50)])
            with pytest.raises(RecordInvalid):
                await publisher.publish(person_change(adress="x"))
            return [one.event_id, *(r.event_id for r in many)]

    ids = asyncio.run(main())
    assert len(set(ids)) == 51
    assert {r["event_id"] for _, r, _ in read_topic(topics, "change.person", expect=51)} == set(ids)


def test_unreachable_broker_fails_within_the_delivery_timeout(topics: Settings) -> None:
    """A real fault: nothing listens on the port. The registry stays reachable, so validation still runs."""
    away = topics.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    with Publisher(away, delivery_timeout=2.0) as publisher:
        start = time.monotonic()
        with pytest.raises(PublishFailed) as e:
            publisher.publish(person_change())
        with pytest.raises(BatchFailed) as batch:
            publisher.publish_many([person_change(person_id(k)) for k in range(3)])
    assert time.monotonic() - start < 15
    assert e.value.retriable and "timed out" in str(e.value).lower()
    assert len(batch.value.failures) == 3


def test_a_producer_in_a_fatal_state_is_replaced_and_publishing_goes_on(topics: Settings) -> None:
    with Publisher(topics) as publisher:
        publisher.publish(person_change(person_id(1)))
        delivery = publisher._delivery
        # A fatal error needs the broker to fence the producer id; the embedded broker did that once under load,
        # but it cannot be caused on purpose, so librdkafka's error callback is called as librdkafka would call it.
        delivery._on_error(KafkaError(KafkaError._FENCED, "producer fenced (test)", fatal=True))
        publisher.publish(person_change(person_id(2)))
        assert delivery.renewals == 1 and delivery.last_error == "_FENCED: producer fenced (test)"
    assert [key for key, _, _ in read_topic(topics, "change.person", expect=2)] == [person_id(1), person_id(2)]
