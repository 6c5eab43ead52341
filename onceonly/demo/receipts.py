"""Follow the receipts topic: per-holder outcomes and record-to-applied times, for progress and the summary."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from onceonly.kafka import confluent_config
from onceonly.settings import Settings
from onceonly.standard import Serde, SerdeError


def _millis(value: Any) -> int:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else int(value or 0)


class ReceiptWatch:
    """Reads ``receipts`` from the start without a consumer group (nothing to join, nothing to commit).

    ``changes`` holds the event ids of the changes the authorities recorded (the caller adds to it as it records).
    An applied record with another id is a fill (an interest registration's or a bootstrap's copy of the latest
    state): it is counted as ``filled`` and kept out of the propagation times, which start when a change was recorded.
    """

    def __init__(self, settings: Settings, serde: Serde, changes: set[str] | None = None) -> None:
        self.settings = settings
        self.serde = serde
        self.changes = changes
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        self.latencies_ms: list[int] = []
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="receipts", daemon=True)
        self._stop = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(10)

    def _run(self) -> None:
        topic = self.settings.topic("receipts")
        consumer = Consumer(
            confluent_config(self.settings, **{"group.id": "demo-receipts", "enable.auto.commit": False})
        )
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, 0) for p in parts])
            while not self._stop.is_set():
                for message in consumer.consume(num_messages=1000, timeout=0.2):
                    if message.error() is None:
                        self._count(message.value())
        finally:
            consumer.close()

    def _count(self, value: bytes | None) -> None:
        try:
            record = self.serde.decode(value).record
        except SerdeError:
            self.errors += 1
            return
        outcome = record["outcome"]
        if outcome == "applied" and self.changes is not None and record["event_id"] not in self.changes:
            self.outcomes[record["holder"]]["filled"] += 1
            return
        self.outcomes[record["holder"]][outcome] += 1
        if outcome == "applied" and record.get("recorded_at") is not None:
            self.latencies_ms.append(_millis(record["applied_at"]) - _millis(record["recorded_at"]))

    def percentile(self, q: float) -> int:
        values = sorted(self.latencies_ms)
        if not values:
            return 0
        return values[min(len(values) - 1, int(q * len(values)))]
