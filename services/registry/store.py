"""Where the registry's state lives: a Kafka topic like the reference registry, or memory when no broker is set.

Records use the reference registry's key shapes (``{"keytype": "SCHEMA", "subject", "version", "magic"}``,
``{"keytype": "CONFIG", "subject", "magic"}``) and a null value for a permanent delete, so the topic stays correct
under log compaction: the last record of each key is that key's state.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from onceonly.kafka import confluent_config, confluent_consumer_config, confluent_producer_config
from onceonly.settings import Settings
from services.registry.errors import StoreError

log = logging.getLogger("onceonly.registry")
NOOP_KEY = {"keytype": "NOOP", "magic": 0}


@dataclass(frozen=True)
class Record:
    """One state change: the key names what changed, a None value deletes it."""

    key: dict[str, Any]
    value: dict[str, Any] | None


class Store(Protocol):
    """Durable history of the registry: ``load`` replays it, ``append`` returns only once it is saved."""

    description: str

    def load(self) -> list[Record]: ...

    def append(self, records: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


class MemoryStore:
    """State for one process only: `registry serve` without a broker, and fast in-process tests."""

    description = "memory (lost when the registry stops)"

    def __init__(self) -> None:
        self.records: list[Record] = []

    def load(self) -> list[Record]:
        return list(self.records)

    def append(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def close(self) -> None:
        pass


def _encode(data: dict[str, Any] | None) -> bytes | None:
    return None if data is None else json.dumps(data, separators=(",", ":")).encode()


class KafkaStore:
    """The registry's state in a one-partition topic (``<prefix>_schemas``), written before every answer.

    The end of the topic is found by producing a unique marker and reading until it comes back, not by asking for
    the high watermark: the embedded broker answers ListOffsets "latest" wrongly (newest batch base offset + 1).
    """

    def __init__(self, settings: Settings, topic: str | None = None, timeout: float = 30.0) -> None:
        self.settings = settings
        self.topic = topic or settings.topic("_schemas")
        self.timeout = timeout
        self.description = f"Kafka topic {self.topic} on {settings.bootstrap_servers}"
        self._ensure_topic()
        self._producer = Producer(confluent_producer_config(settings, **{"linger.ms": 0}))

    def _ensure_topic(self) -> None:
        admin = AdminClient(confluent_config(self.settings))
        try:
            topics = admin.list_topics(timeout=self.timeout).topics
        except KafkaException as e:
            raise StoreError(f"the Kafka cluster at {self.settings.bootstrap_servers} did not answer: {e}") from e
        if self.topic in topics:
            partitions = len(topics[self.topic].partitions)
            if partitions != 1:
                raise StoreError(f"topic {self.topic} has {partitions} partitions; the registry needs exactly 1")
            return
        spec = NewTopic(self.topic, num_partitions=1, replication_factor=-1, config={"cleanup.policy": "compact"})
        try:
            admin.create_topics([spec], operation_timeout=self.timeout)[self.topic].result(timeout=self.timeout)
            log.info("created topic %s (1 partition, compacted)", self.topic)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StoreError(f"cannot create topic {self.topic}: {e}") from e

    def append(self, records: Sequence[Record]) -> None:
        """Produce with acks=all and wait: a record the broker did not confirm is an error, never an answer."""
        failures: list[str] = []

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        try:
            for r in records:
                self._producer.produce(self.topic, key=_encode(r.key), value=_encode(r.value), on_delivery=delivered)
        except (KafkaException, BufferError) as e:
            raise StoreError(f"cannot write to {self.topic}: {e}") from e
        pending = self._producer.flush(self.timeout)
        if pending or failures:
            reason = failures[0] if failures else f"{pending} record(s) unconfirmed after {self.timeout:.0f}s"
            raise StoreError(f"cannot write to {self.topic}: {reason}")

    def load(self) -> list[Record]:
        """Everything in the topic up to a marker we write now, so nothing written before our start is missed."""
        marker = uuid.uuid4().hex
        self.append([Record(NOOP_KEY, {"marker": marker})])
        consumer = Consumer(
            confluent_consumer_config(self.settings, f"onceonly-registry-{marker}", **{"enable.partition.eof": False})
        )
        # Offset 0, not OFFSET_BEGINNING: no ListOffsets round trip to trust (the embedded broker's answers are not
        # always right), and where 0 is gone (retention) auto.offset.reset=earliest starts at the first record.
        consumer.assign([TopicPartition(self.topic, 0, 0)])
        records: list[Record] = []
        deadline = time.monotonic() + self.timeout
        try:
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    raise StoreError(f"cannot read {self.topic}: {msg.error()}")
                record = _decode(msg.key(), msg.value(), msg.offset())
                if record is None:
                    continue
                if record.key == NOOP_KEY:
                    if record.value and record.value.get("marker") == marker:
                        return records
                    continue
                records.append(record)
        finally:
            consumer.close()
        raise StoreError(f"did not read back our start marker from {self.topic} within {self.timeout:.0f}s")

    def close(self) -> None:
        self._producer.flush(self.timeout)


def _decode(key: bytes | None, value: bytes | None, offset: int | None) -> Record | None:
    """A record of ours, or None (logged) for anything else in the topic, so one stray record cannot stop a start."""
    try:
        k = json.loads(key) if key else None
        v = json.loads(value) if value is not None else None
    except ValueError:
        log.warning("skipping offset %d: key or value is not JSON", offset)
        return None
    if not isinstance(k, dict) or not (v is None or isinstance(v, dict)):
        log.warning("skipping offset %d: not a registry record", offset)
        return None
    return Record(k, v)
