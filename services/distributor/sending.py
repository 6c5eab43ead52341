"""Ordered, gapless delivery of one phase of a batch, waiting for every acknowledgement.

The producer is idempotent with the gapless guarantee and no message timeout: records of a partition land in
the order produced, and a record that could not land stops the producer instead of leaving a hole. That keeps
each entity's changes in order in the inboxes and the ledger's chain unbroken. Any delivery error is fatal for
this run (``DeliveryFailed``); nothing of the batch is committed, so the next run distributes it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from onceonly.errors import OnceonlyError
from onceonly.kafka import confluent_producer_config
from onceonly.settings import Settings

log = logging.getLogger(__name__)


class DeliveryFailed(OnceonlyError):
    """The broker refused a record for good; the distributor stops without committing the batch."""


@dataclass(slots=True)
class Out:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class _KnownWarnings(logging.Filter):
    """librdkafka warns on every start that the gapless guarantee is experimental: we chose it, say it once here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "enable.gapless.guarantee is experimental" not in record.getMessage()


_CLIENT_LOG = logging.getLogger("onceonly.distributor.librdkafka")
_CLIENT_LOG.addFilter(_KnownWarnings())


def gapless_producer(settings: Settings) -> Producer:
    """``delivery.report.only.error``: a record counts as landed when it has left the queue (``len(producer)``),
    so only failures need a report; a report per record cost a Python callback each, nine per change."""
    return Producer(
        confluent_producer_config(
            settings,
            **{
                "enable.gapless.guarantee": True,
                "message.timeout.ms": 0,
                "linger.ms": 5,
                "delivery.report.only.error": True,
                "logger": _CLIENT_LOG,
            },
        )
    )


def _topic_of(msg: Message) -> str:
    """The topic of a failed record; with a fatal producer error pending, reading the message itself can raise
    (seen once as a SystemError that killed the process): the error says enough then."""
    try:
        return str(msg.topic())
    except Exception:  # anything raised inside the delivery callback must end as DeliveryFailed
        return "a topic"


_POLL_EVERY = 1000  # records produced between two polls (reports are served while waiting, below)


def send(producer: Producer, records: Sequence[Out], stop: threading.Event) -> bool:
    """Produce ``records`` in order and wait for all of them; False if asked to stop before they all landed."""
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(f"{_topic_of(msg)}: {err}")

    produce = producer.produce
    for n, record in enumerate(records, 1):
        kwargs: dict[str, Any] = {"on_delivery": on_delivery}
        if record.headers:
            kwargs["headers"] = record.headers
        while True:
            try:
                produce(record.topic, record.value, record.key, **kwargs)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.05)
                if stop.is_set():
                    return False
        if n % _POLL_EVERY == 0:
            producer.poll(0)
    while len(producer) > 0:
        producer.flush(0.5)
        if errors:
            break
        if stop.is_set() and len(producer) > 0:
            log.warning("stopping with %d records not yet acknowledged; the batch is not committed", len(producer))
            return False
    if errors:
        raise DeliveryFailed(f"the broker refused {len(errors)} record(s), first: {errors[0]}")
    return True
