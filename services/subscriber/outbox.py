"""What a batch must have published (dead letters, receipts) before its offsets may be committed.

Committing first and publishing after could lose a dead letter in a crash; publishing first and committing after
can at worst publish it twice, which readers tolerate (dead letters carry their source offset, receipts fold).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger(__name__)


@dataclass
class _Record:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class _Clock:
    """Never gives up until ``stop`` is set; from then on, gives ``grace`` seconds more."""

    def __init__(self, stop: threading.Event, grace: float) -> None:
        self.stop, self.grace = stop, grace
        self.deadline: float | None = None

    def out(self) -> bool:
        if not self.stop.is_set():
            return False
        if self.deadline is None:
            self.deadline = time.monotonic() + self.grace
        return time.monotonic() > self.deadline


class Outbox:
    """Collects records for one batch and delivers all of them, re-sending any the broker did not take."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._records: list[_Record] = []

    def add(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        self._records.append(_Record(topic, key, value, headers or []))

    def __len__(self) -> int:
        return len(self._records)

    def deliver(self, stop: threading.Event, grace: float = 3.0, backoff_max: float = 5.0) -> bool:
        """Block until every record is acknowledged; once ``stop`` is set, try ``grace`` seconds more, then give up
        (False: nothing may be committed then). A stopping worker still commits what it applied if it can."""
        clock = _Clock(stop, grace)
        pending = self._records
        delay = 0.2
        while pending:
            failed: list[_Record] = []
            for record in pending:
                if not self._produce(record, failed, clock):
                    return False
            while len(self._producer) > 0:
                self._producer.flush(0.2)
                if clock.out():
                    return False
            if not failed:
                break
            log.warning("%d records were not delivered (%s); sending them again", len(failed), failed[0].topic)
            if stop.is_set():
                time.sleep(0.2)
            else:
                stop.wait(delay)
            if clock.out():
                return False
            delay = min(delay * 2, backoff_max)
            pending = failed
        self._records = []
        return True

    def _produce(self, record: _Record, failed: list[_Record], clock: _Clock) -> bool:
        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                log.warning("delivery to %s failed: %s", record.topic, err)
                failed.append(record)

        kwargs: dict[str, Any] = {"key": record.key, "value": record.value, "on_delivery": on_delivery}
        if record.headers:
            kwargs["headers"] = record.headers
        while True:
            try:
                self._producer.produce(record.topic, **kwargs)
                return True
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.1)
                if clock.out():
                    return False
