"""How far each holder's subscriber is behind its inbox: the end of ``inbox.<holder>`` minus what its group committed.

The end is the fetch response's high watermark when ``broker_quirks`` is ``tansu``: the embedded broker's ListOffsets
answers "latest" with the newest batch's base offset + 1 (DESIGN.md). Reading from one record before that answer to
the partition's EOF costs at most one batch and yields the true end. Elsewhere ListOffsets is right and is used.
Committed offsets come from OffsetFetch, which does not join the group, so measuring never disturbs a subscriber.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from onceonly.errors import BrokerUnavailable
from onceonly.kafka import confluent_config
from onceonly.settings import Settings
from services.distributor.reading import partitions_of, reader
from services.operator.follow import TopicPartitionKey


def end_offsets(settings: Settings, topics: Iterable[str], timeout: float = 10.0) -> dict[TopicPartitionKey, int]:
    """The end offset (next offset to be written) of every partition of ``topics``."""
    consumer = reader(settings)
    try:
        tps = [(t, p) for t in topics for p in partitions_of(consumer, t)]
        try:
            listed = {tp: consumer.get_watermark_offsets(TopicPartition(*tp), timeout=timeout) for tp in tps}
        except KafkaException as e:
            raise BrokerUnavailable(f"the Kafka cluster did not answer ListOffsets: {e}") from e
        if settings.broker_quirks != "tansu":
            return {tp: high for tp, (_, high) in listed.items()}
        return _fetch_ends(consumer, listed, timeout)
    finally:
        consumer.close()


def _fetch_ends(
    consumer: Consumer, listed: dict[TopicPartitionKey, tuple[int, int]], timeout: float
) -> dict[TopicPartitionKey, int]:
    """Read from just before ListOffsets' answer to EOF; the EOF event's offset is the fetch high watermark."""
    ends = {tp: low for tp, (low, _) in listed.items()}
    consumer.assign([TopicPartition(t, p, max(low, high - 1)) for (t, p), (low, high) in listed.items()])
    todo = set(listed)
    deadline = time.monotonic() + timeout
    while todo:
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"no end offset for {sorted(todo)} within {timeout:.0f}s")
        message = consumer.poll(0.2)
        if message is None:
            continue
        tp = (message.topic() or "", message.partition() or 0)
        error = message.error()
        if error is None:
            ends[tp] = max(ends.get(tp, 0), (message.offset() or 0) + 1)
        elif error.code() == KafkaError._PARTITION_EOF:
            ends[tp] = max(ends.get(tp, 0), message.offset() or 0)
            todo.discard(tp)
        elif error.fatal():
            raise BrokerUnavailable(f"reading {tp[0]}[{tp[1]}] failed: {error}")
    return ends


def committed_offsets(settings: Settings, group: str, tps: Iterable[TopicPartitionKey]) -> dict[TopicPartitionKey, int]:
    """The group's committed positions (0 where it committed nothing yet), without joining the group."""
    wanted = [TopicPartition(t, p) for t, p in tps]
    consumer = Consumer(confluent_config(settings, **{"group.id": group, "enable.auto.commit": False}))
    try:
        found = consumer.committed(wanted, timeout=10)
    except KafkaException as e:
        raise BrokerUnavailable(f"could not read the committed offsets of group {group}: {e}") from e
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in found}


def subscriber_group(settings: Settings, holder: str, configured: str | None = None) -> str:
    """The consumer group of a holder's subscriber under the prefix: its configured ``group_id``, by default
    ``subscriber.<holder>`` (the name ``SubscriberConfig.group`` gives, as the subscriber itself does)."""
    return f"{settings.topic_prefix}{configured or f'subscriber.{holder}'}"


def lag_by_holder(settings: Settings, holders: list[str]) -> dict[str, int]:
    """Records in ``inbox.<holder>`` that the holder's subscriber group has not committed yet, per holder."""
    inbox = {h: settings.topic(f"inbox.{h}") for h in holders}
    ends = end_offsets(settings, inbox.values())
    out: dict[str, int] = {}
    for holder, topic in inbox.items():
        mine = {tp: end for tp, end in ends.items() if tp[0] == topic}
        done = committed_offsets(settings, subscriber_group(settings, holder), mine)
        out[holder] = sum(max(end - done.get(tp, 0), 0) for tp, end in mine.items())
    return out
