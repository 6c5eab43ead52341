"""One idempotent confluent-kafka producer, polled by a background thread, answering each send with a future.

A future per message lets the sync API wait for one acknowledgement, batches wait for many at once (where
throughput comes from), and the async API await the same futures without a second producer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from onceonly.publisher.errors import PublishFailed

log = logging.getLogger(__name__)
Headers = list[tuple[str, str | bytes | None]] | None

# Codes that mean "the broker did not take it this time"; anything else (too large, not authorized) is final.
_FINAL = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}


@dataclass(frozen=True, slots=True)
class Ack:
    """Where the broker put a record."""

    topic: str
    partition: int
    offset: int


def _ack(message: Message) -> Ack:
    """Where the broker put a record; an acknowledgement without an offset says -1 (unknown), never 0."""
    offset, partition = message.offset(), message.partition()
    return Ack(str(message.topic()), -1 if partition is None else partition, -1 if offset is None else offset)


class Delivery:
    """Sends records and resolves their futures from delivery reports; ``last_error`` says why the broker is silent.

    An idempotent producer that hits a fatal error (the broker fenced its producer id, a sequence gap it cannot
    close) refuses every later record. Like a Kafka Connect task restart, the next send replaces it with a fresh
    producer; the records the old one held fail as retriable, so callers send them again (same event ids).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = {**config, "error_cb": self._on_error}
        self._producer = Producer(self._config)
        self._renewing = threading.Lock()
        self._fatal: str | None = None
        self.renewals = 0
        self._closing = threading.Event()
        self.last_error: str | None = None
        self._poller = threading.Thread(target=self._poll, name="onceonly-delivery", daemon=True)
        self._poller.start()

    def _on_error(self, error: KafkaError) -> None:
        self.last_error = f"{error.name()}: {error.str()}"
        if error.fatal():
            self._fatal = self.last_error
        level = logging.ERROR if error.fatal() else logging.WARNING
        log.log(level, "producer: %s", self.last_error)

    def _poll(self) -> None:
        while not self._closing.is_set():
            try:
                self._producer.poll(0.05)
            except RuntimeError:  # polled the producer just replaced and closed: the next turn polls the new one
                continue

    def _renew_if_fatal(self) -> None:
        """Swap a producer in a fatal state for a new one; what the old one held fails (retriable) via purge."""
        if self._fatal is None:
            return
        with self._renewing:
            if self._fatal is None:
                return
            old, why = self._producer, self._fatal
            self._producer, self._fatal = Producer(self._config), None
            self.renewals += 1
            log.warning("producer: replaced after a fatal error (%s); unacknowledged records will be sent again", why)
            old.purge()
            old.flush(1.0)  # fires the purged records' delivery reports
            old.close()

    def send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, str | bytes | None]] | None = None
    ) -> Future[Ack]:
        """Queue one record; the future resolves with its ``Ack`` or fails with ``PublishFailed``."""
        future: Future[Ack] = Future()

        def report(error: KafkaError | None, message: Message) -> None:
            if future.done():  # the caller gave up waiting (cancelled): nobody to tell
                return
            if error is None:
                future.set_result(_ack(message))
            else:  # a fatal error is retriable too: the next send comes from a fresh producer
                retriable = error.code() not in _FINAL
                future.set_exception(PublishFailed(f"{error.name()}: {error.str()}", retriable=retriable))

        self._renew_if_fatal()
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=report)
                return future
            except BufferError:  # the local queue is full: the poller is draining it
                time.sleep(0.002)
            except KafkaException as e:  # a fatal producer state: the next send starts a fresh producer
                self._fatal = self._fatal or str(e)
                future.set_exception(PublishFailed(f"the producer refused the record: {e}", retriable=True))
                return future

    def send_many(
        self, records: Sequence[tuple[str, bytes | None, bytes, Headers]], timeout: float
    ) -> list[Ack | PublishFailed | None]:
        """Queue records and wait (at most ``timeout`` seconds) for all their reports; one outcome per record, in
        order, ``None`` where no report came in time.

        One event per batch instead of a future per record: a future's lock and condition cost more than producing.
        """
        results: list[Ack | PublishFailed | None] = [None] * len(records)
        pending = [len(records)]
        lock = threading.Lock()
        done = threading.Event()

        def settled() -> None:
            with lock:
                pending[0] -= 1
                if pending[0] == 0:
                    done.set()

        def reporter(i: int) -> Callable[[KafkaError | None, Message], None]:
            def report(error: KafkaError | None, message: Message) -> None:
                if error is None:
                    results[i] = _ack(message)
                else:  # a fatal error is retriable too: the next send comes from a fresh producer
                    retriable = error.code() not in _FINAL
                    results[i] = PublishFailed(f"{error.name()}: {error.str()}", retriable=retriable)
                settled()

            return report

        for i, (topic, key, value, headers) in enumerate(records):
            self._renew_if_fatal()
            while True:
                try:
                    self._producer.produce(topic, value, key, headers=headers, on_delivery=reporter(i))
                    break
                except BufferError:  # the local queue is full: the poller is draining it
                    time.sleep(0.002)
                except KafkaException as e:  # a fatal producer state: the next record starts a fresh producer
                    self._fatal = self._fatal or str(e)
                    results[i] = PublishFailed(f"the producer refused the record: {e}", retriable=True)
                    settled()
                    break
        if records:
            done.wait(timeout)
        return list(results)

    def close(self, timeout: float = 10.0) -> int:
        """Wait for queued records (at most ``timeout``), stop polling; returns how many were left undelivered."""
        if self._closing.is_set():
            return 0
        left = int(self._producer.flush(timeout))
        self._closing.set()
        self._poller.join(timeout=2.0)
        self._producer.close()  # stops librdkafka's threads now, not whenever the object is collected
        return left
