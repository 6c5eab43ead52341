"""Reading a topic to its end without trusting ListOffsets.

The embedded broker answers ListOffsets "latest" wrongly (see DESIGN.md), but the high watermark in its fetch
responses is right, and librdkafka reports reaching it as a partition EOF event. So "the end" here is always
the first EOF of each partition, from a consumer that only assigns (it joins no group and commits nothing).

The fetch that proves the end answers after 20 ms instead of the client's default 500 ms (``fetch.wait.max.ms``;
Apache Kafka too holds a fetch at the end that long): the distributor reads several topics at start, and an
operator command several in a row (two ledgers for ``status``, the ledger head before each append).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from onceonly.errors import BrokerUnavailable, ConfigError
from onceonly.kafka import confluent_config
from onceonly.settings import Settings

END_FETCH_WAIT_MS = 20


def reader(settings: Settings) -> Consumer:
    """A consumer for assign-only reads: a throwaway group id (required by the client), never committed."""
    return Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"{settings.topic_prefix}onceonly-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": END_FETCH_WAIT_MS,
            },
        )
    )


def partitions_of(consumer: Consumer, topic: str, timeout: float = 10.0) -> list[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as e:
        raise BrokerUnavailable(f"the Kafka cluster did not answer: {e}", hint="is the stack up?") from e
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise ConfigError(f"topic {topic} does not exist", hint="run: onceonly topics apply")
    return sorted(found.partitions)


def read_to_end(
    settings: Settings,
    starts: Mapping[tuple[str, int], int],
    *,
    stops: Mapping[tuple[str, int], int] | None = None,
    idle_timeout: float = 30.0,
) -> Iterator[Message]:
    """Every record from ``starts`` (per topic partition) to the partition's end, or to ``stops`` when given.

    A partition is finished at its first EOF (fetch high watermark) or once a record at or past its stop offset
    shows up; records at or past a stop offset are not yielded. ``BrokerUnavailable`` when nothing arrives for
    ``idle_timeout`` seconds.
    """
    stops = stops or {}
    todo = {tp for tp, start in starts.items() if stops.get(tp, start + 1) > start}
    if not todo:
        return
    consumer = reader(settings)
    try:
        consumer.assign([TopicPartition(t, p, starts[(t, p)]) for t, p in sorted(todo)])
        deadline = time.monotonic() + idle_timeout
        while todo:
            batch = consumer.consume(num_messages=1000, timeout=0.2)
            if not batch:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(f"reading {sorted(todo)} made no progress for {idle_timeout:.0f}s")
                continue
            deadline = time.monotonic() + idle_timeout
            for message in batch:
                tp = (message.topic() or "", message.partition() or 0)
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        todo.discard(tp)
                    elif error.fatal() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise BrokerUnavailable(f"reading {tp[0]}[{tp[1]}] failed: {error}")
                    continue
                if tp not in todo:
                    continue
                offset = message.offset() or 0
                stop = stops.get(tp)
                if stop is not None and offset >= stop:
                    todo.discard(tp)
                    continue
                yield message
                if stop is not None and offset + 1 >= stop:
                    todo.discard(tp)
    finally:
        consumer.close()


def whole_topics(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    """Start offsets (0) of every partition of ``topics``."""
    consumer = reader(settings)
    try:
        return {(t, p): 0 for t in topics for p in partitions_of(consumer, t)}
    finally:
        consumer.close()
