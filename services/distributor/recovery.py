"""Rebuilding the distributor's memory from Kafka at start: entity state, interest, and the ledger's head."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from onceonly.errors import BrokerUnavailable, ConfigError
from onceonly.settings import Settings
from onceonly.standard import Serde, SerdeError
from services.distributor.reading import partitions_of, read_to_end, reader, whole_topics
from services.distributor.state import InterestSet, StateView, state_headers

log = logging.getLogger(__name__)


def load_state(settings: Settings, topics: list[str]) -> StateView:
    """Every ``state.<entity>`` topic read to its end (fetch high watermark, not ListOffsets)."""
    view = StateView()
    by_topic = {t: t.rsplit(".", 1)[-1] for t in topics}
    for message in read_to_end(settings, whole_topics(settings, topics)):
        entity_type, key = by_topic[message.topic() or ""], (message.key() or b"").decode()
        value = message.value()
        if not value:
            view.drop(entity_type, key)
            continue
        version, distributed = state_headers(message.headers())
        if version is not None:
            view.put(entity_type, key, version, value, distributed)
    return view


def committed_offsets(consumer: Consumer, topic: str) -> dict[tuple[str, int], int]:
    """The group's committed read positions on ``topic`` (0 where it has none)."""
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in partitions_of(consumer, topic)], timeout=15)
    except KafkaException as e:
        raise BrokerUnavailable(f"could not read the distributor's committed offsets: {e}") from e
    return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in found}


def load_interest(settings: Settings, serde: Serde, topic: str, upto: Mapping[tuple[str, int], int]) -> InterestSet:
    """Registrations up to the group's committed offsets: later ones are processed again by the loop."""
    interest = InterestSet()
    for message in read_to_end(settings, dict.fromkeys(upto, 0), stops=upto):
        try:
            interest.apply(serde.decode(message.value()).record)
        except SerdeError as e:
            log.warning("interest record %s[%s]@%s ignored: %s", topic, message.partition(), message.offset(), e)
    return interest


def ledger_messages(settings: Settings, topic: str, start: int = 0) -> Iterator[Any]:
    return read_to_end(settings, {(topic, 0): start})


def ledger_tail(settings: Settings, serde: Serde, topic: str) -> Mapping[str, Any] | None:
    """The newest ledger entry, or None for an empty ledger.

    Apache Kafka: ListOffsets gives the end, and only the last record is read. The embedded broker's ListOffsets
    cannot be trusted (``broker_quirks: tansu``), so there the whole partition is scanned to its fetch end.
    """
    consumer = reader(settings)
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    except KafkaException as e:
        raise BrokerUnavailable(f"could not read the ledger's offsets: {e}") from e
    finally:
        consumer.close()
    start = low if settings.broker_quirks == "tansu" else max(low, high - 1)
    last = None
    for message in ledger_messages(settings, topic, start):
        last = message
    if last is None:
        return None
    try:
        record: Mapping[str, Any] = serde.decode(last.value()).record
    except SerdeError as e:
        raise ConfigError(
            f"the ledger's newest entry ({topic} offset {last.offset()}) cannot be decoded: {e}",
            hint="run: onceonly audit verify",
        ) from e
    return record
