"""Consumer moves shared by the subscriber, the distributor and the tracker: batch polling, paused back-off, exact
commits, and each worker's own lag."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from onceonly import metrics
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


def next_batch(consumer: Consumer, size: int, carry: list[Message], lag: LagMeter | None = None) -> list[Message]:
    """``carry`` first; else wait for one record, then take whatever else is already fetched, up to ``size``."""
    if lag is not None:
        lag.report(consumer)
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


def commit(consumer: Consumer, positions: Iterable[tuple[str, int, int]], lag: LagMeter | None = None) -> bool:
    """Commit ``(topic, partition, offset)`` read positions synchronously: the next read starts after each offset."""
    offsets = next_offsets(positions)
    if not offsets:
        return True
    try:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        if lag is not None:
            lag.committed(offsets)
        return True
    except KafkaException as e:  # a rebalance got in between: redelivery is harmless, applying is idempotent
        log.warning("commit failed (%s); those records will be read again", e)
        return False


class LagMeter:
    """One worker's own lag, as ``onceonly_consumer_lag{group, topic}``: records in its partitions not committed yet.

    The end of a partition is the high watermark of the worker's own last fetch response
    (``get_watermark_offsets(cached=True)``: no request is sent). The embedded broker's ListOffsets answer is wrong
    (DESIGN.md), its fetch responses are right, and so are every other broker's. What is done is what this worker
    committed; for a partition it has not committed since it got it, the group's committed offset, asked once (the
    partition's start if the group never committed). The gauge is refreshed from the poll loop at most every
    ``every`` seconds. A paused worker (store down) or one whose prefetch queue is full does not fetch, so its end
    is the last one it saw and the gauge is a lower bound then; ``onceonly lag`` reads the true end.
    """

    def __init__(self, group: str, every: float = 1.0) -> None:
        self.group = group
        self.every = every
        self._done: dict[tuple[str, int], int] = {}
        self._due = 0.0
        self._topics: set[str] = set()

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions assigned or revoked: what this worker committed on them before may no longer be the group's."""
        for tp in partitions:
            self._done.pop((tp.topic, tp.partition), None)

    def committed(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self._done.update(offsets)

    def forget_all(self) -> None:
        """A new assignment (a host that is told only the whole of it): nothing committed before is known."""
        self._done.clear()

    def report(self, consumer: Consumer) -> None:
        """Set the gauge per topic (0 for a topic whose partitions went to another worker); throttled."""
        if not self._due_now():
            return
        assigned = consumer.assignment()
        unknown = [tp for tp in assigned if (tp.topic, tp.partition) not in self._done]
        if unknown:
            self._ask_group(consumer, unknown)
        ends: dict[tuple[str, int], int] = {}
        for tp in assigned:
            marks = consumer.get_watermark_offsets(tp, cached=True)
            ends[(tp.topic, tp.partition)] = marks[1] if marks else -1
        self._set(ends)

    def report_ends(self, ends: Mapping[tuple[str, int], int]) -> None:
        """The same gauge from partition ends a host read from its own fetches; throttled. A partition this
        worker has not committed on since it got it counts 0 until it does (a lower bound)."""
        if self._due_now():
            self._set(ends)

    def _due_now(self) -> bool:
        now = time.monotonic()
        if now < self._due:
            return False
        self._due = now + self.every
        return True

    def _set(self, ends: Mapping[tuple[str, int], int]) -> None:
        waiting = dict.fromkeys(self._topics, 0)
        for (topic, partition), high in ends.items():
            done = self._done.get((topic, partition))
            waiting[topic] = waiting.get(topic, 0) + (max(high - done, 0) if done is not None and high >= 0 else 0)
        for topic, n in waiting.items():
            metrics.LAG.labels(group=self.group, topic=topic).set(n)
        self._topics = set(waiting)

    def _ask_group(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            found = consumer.committed(partitions, timeout=2)
        except KafkaException as e:  # asked again at the next report
            log.debug("lag: committed offsets not available: %s", e)
            return
        for tp in found:
            if tp.offset >= 0:
                self._done[(tp.topic, tp.partition)] = tp.offset
                continue
            marks = consumer.get_watermark_offsets(tp, cached=True)  # never committed: starts at the beginning
            if marks and marks[0] >= 0:
                self._done[(tp.topic, tp.partition)] = marks[0]
