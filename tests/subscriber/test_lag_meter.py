"""A worker's own lag gauge: the end its fetches saw minus what it committed, right where ListOffsets is not."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from prometheus_client import REGISTRY

from onceonly.kafka import confluent_consumer_config, confluent_producer_config
from onceonly.settings import Settings
from services.subscriber.polling import LagMeter, commit, consumer_tuning, next_batch


@contextmanager
def metered(settings: Settings, topic: str, group: str) -> Iterator[tuple[Consumer, LagMeter]]:
    """A consumer of every partition of ``topic`` from offset 0, and a meter that reports at every call."""
    consumer = Consumer(confluent_consumer_config(settings, group, **consumer_tuning(settings)))
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        yield consumer, LagMeter(group, every=0)
    finally:
        consumer.close()


def read(consumer: Consumer, meter: LagMeter, count: int) -> list[Message]:
    got: list[Message] = []
    while len(got) < count:
        got += next_batch(consumer, 100, [], meter)
    return got


def lag(group: str, topic: str) -> float | None:
    return REGISTRY.get_sample_value("onceonly_consumer_lag", {"group": group, "topic": topic})


def test_lag_is_the_fetched_end_minus_what_was_committed(topics: Settings) -> None:
    topic, group = topics.topic("inbox.tax"), topics.topic("lag-meter")
    producer = Producer(confluent_producer_config(topics))
    for i in range(12):  # six batches of one record, then one batch of six: the newest batch starts at offset 6
        producer.produce(topic, key=b"one-entity", value=f"r{i}".encode())
        if i < 6:
            producer.flush(10)
    assert producer.flush(10) == 0

    with metered(topics, topic, group) as (consumer, meter):
        positions = [(m.topic() or "", m.partition() or 0, m.offset() or 0) for m in read(consumer, meter, 12)]
        meter.report(consumer)
        assert lag(group, topic) == 12, "never committed: everything from the partition's start is waiting"
        assert commit(consumer, positions[:5], meter)
        meter.report(consumer)
        assert lag(group, topic) == 7
        assert commit(consumer, positions, meter)
        meter.report(consumer)
        assert lag(group, topic) == 0
        meter.forget(consumer.assignment())  # as after a rebalance: the group's committed offset is asked again
        meter.report(consumer)
        assert lag(group, topic) == 0


def test_a_topic_whose_partitions_went_elsewhere_reports_zero(topics: Settings) -> None:
    """Another worker owns them now and reports their lag; this one must not keep showing its last figure."""
    topic, group = topics.topic("inbox.hrss"), topics.topic("lag-meter-gone")
    producer = Producer(confluent_producer_config(topics))
    for i in range(3):
        producer.produce(topic, key=b"one-entity", value=f"r{i}".encode())
    assert producer.flush(10) == 0

    with metered(topics, topic, group) as (consumer, meter):
        read(consumer, meter, 3)
        meter.report(consumer)
        assert lag(group, topic) == 3
        parts = consumer.assignment()
        consumer.unassign()
        meter.forget(parts)
        meter.report(consumer)
        assert lag(group, topic) == 0
