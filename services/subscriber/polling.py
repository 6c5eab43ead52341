"""Consumer moves shared by the subscriber and the tracker: batch polling, paused back-off, exact commits."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from onceonly.settings import Settings

log = logging.getLogger(__name__)

POLL_TIMEOUT = 0.5
TANSU_FETCH_WAIT_MS = 50
PREFETCH_KBYTES = 8192


def consumer_tuning(settings: Settings) -> dict[str, Any]:
    """Consumer properties for a service's hot loop (distributor, subscriber).

    Prefetch: librdkafka reads ahead up to 64 MB by default, so a worker that fell behind held that much more
    memory than one that kept up; 8 MB is still some 25,000 changes ahead of a batch of 500.

    Fetch wait: the embedded broker holds every fetch for the whole ``fetch.wait.max.ms`` (librdkafka's default:
    500 ms) even when records arrive meanwhile; Apache Kafka answers as soon as one does. Measured on the embedded
    broker, a record produced into an idle topic reached a waiting consumer after 215 ms (p50) with the default,
    15 ms with 100 and 2.5 ms with 10; each hop of a change (distributor, then subscriber) paid that wait. So with
    ``broker_quirks: tansu`` the wait is short; a backlog is fetched at once either way. The price is polling:
    six idle consumers cost the broker 4% of a core at 50 ms (1% at 500, 8 to 12% at 20), and at 1,000 changes/s
    the broker spent up to twice the CPU it spent with 500 ms.
    """
    tuning: dict[str, Any] = {"queued.max.messages.kbytes": PREFETCH_KBYTES}
    if settings.broker_quirks == "tansu":
        tuning["fetch.wait.max.ms"] = TANSU_FETCH_WAIT_MS
    return tuning


class _Repeats(logging.Filter):
    """Let each distinct message through once per ``every`` seconds (numbers ignored when comparing).

    librdkafka reports a failed connect every few milliseconds while the broker is away; one line says it.
    """

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = re.sub(r"\d+", "#", record.getMessage())
        now = time.monotonic()
        if now - self._last.get(key, -self.every) < self.every:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        return True


KAFKA_LOG = logging.getLogger("onceonly.librdkafka")
"""Where the clients' own log goes (pass as ``logger``): through logging, repeats held back."""
KAFKA_LOG.addFilter(_Repeats())


def usable(message: Message) -> bool:
    """A record to process; consumer errors are logged (fatal ones raised) and skipped."""
    err = message.error()
    if err is None:
        return True
    if err.fatal():
        raise KafkaException(err)
    log.warning("consumer: %s", err)
    return False


def next_batch(consumer: Consumer, size: int, carry: list[Message]) -> list[Message]:
    """``carry`` first; else wait for one record, then take whatever else is already fetched, up to ``size``."""
    batch = carry[:size]
    del carry[:size]
    if not batch:
        first = consumer.poll(POLL_TIMEOUT)
        if first is None:
            return []
        batch = [first]
    room = size - len(batch)
    if room > 0:
        batch.extend(consumer.consume(num_messages=room, timeout=0))
    return [m for m in batch if usable(m)]


def wait_paused(consumer: Consumer, seconds: float, stop: threading.Event, carry: list[Message]) -> None:
    """Back off without leaving the group: keep polling with every assigned partition paused.

    Partitions assigned during the wait are paused too; anything they delivered before that is kept in ``carry``
    so it is processed later rather than skipped.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        consumer.pause(consumer.assignment())
        carry.extend(m for m in consumer.consume(num_messages=100, timeout=0.2) if usable(m))


def next_offsets(positions: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int], int]:
    """``(topic, partition, offset)`` read positions -> per partition, the offset to read next."""
    offsets: dict[tuple[str, int], int] = {}
    for topic, partition, offset in positions:
        offsets[(topic, partition)] = max(offsets.get((topic, partition), 0), offset + 1)
    return offsets


def commit(consumer: Consumer, positions: Iterable[tuple[str, int, int]]) -> bool:
    """Commit ``(topic, partition, offset)`` read positions synchronously: the next read starts after each offset."""
    offsets = next_offsets(positions)
    if not offsets:
        return True
    try:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        return True
    except KafkaException as e:  # a rebalance got in between: redelivery is harmless, applying is idempotent
        log.warning("commit failed (%s); those records will be read again", e)
        return False
