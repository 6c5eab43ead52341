"""Reading topic ranges to their end for operator commands, quickly and without trusting ListOffsets.

The same contract as ``services.distributor.reading.read_to_end`` (the end is each partition's first EOF, i.e. the
fetch high watermark, right on every broker; an assign-only consumer that joins no group and commits nothing), with
one difference: the fetch that proves the end answers after 20 ms instead of the client's default 500 ms
(``fetch.wait.max.ms``). The distributor reads its topics once at start; an operator command reads several in a row
(two ledgers for ``status``, the ledger head before each append), and 0.5 s per read added up to seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from onceonly.errors import BrokerUnavailable
from onceonly.kafka import confluent_config
from onceonly.settings import Settings

TP = tuple[str, int]


def quick_reader(settings: Settings) -> Consumer:
    """An assign-only consumer (throwaway group id, never committed) whose fetches at the end return quickly."""
    return Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"{settings.topic_prefix}onceonly-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 20,
            },
        )
    )


def read_range(
    settings: Settings,
    starts: Mapping[TP, int],
    *,
    stops: Mapping[TP, int] | None = None,
    idle_timeout: float = 30.0,
) -> Iterator[Message]:
    """Every record from ``starts`` to each partition's end (first EOF), or to ``stops`` (exclusive) when given."""
    stops = stops or {}
    todo = {tp for tp, start in starts.items() if stops.get(tp, start + 1) > start}
    if not todo:
        return
    consumer = quick_reader(settings)
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
