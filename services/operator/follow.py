"""Following topics without a consumer group: each read returns only what arrived since the previous one.

The operator service refreshes its view every second or two; re-reading whole topics each time would grow with their
size. A ``Follower`` keeps its positions and reads from them to the end with ``reading.read_to_end`` (the end is
the fetch high watermark, never ListOffsets, which the embedded broker answers wrongly; the fetch that proves the end
answers in 20 ms, not the client's default 500).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from confluent_kafka import Message

from onceonly.settings import Settings
from services.distributor.reading import partitions_of, read_to_end, reader

TopicPartitionKey = tuple[str, int]


def all_partitions(settings: Settings, topics: Iterable[str]) -> dict[TopicPartitionKey, int]:
    """Offset 0 of every partition of ``topics`` (``ConfigError`` naming a topic that does not exist)."""
    consumer = reader(settings)
    try:
        return {(t, p): 0 for t in topics for p in partitions_of(consumer, t)}
    finally:
        consumer.close()


class Follower:
    """Positions on every partition of some topics; ``new()`` reads from them to the end and moves them on."""

    def __init__(self, settings: Settings, topics: Iterable[str]) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.positions: dict[TopicPartitionKey, int] | None = None
        self._lock = threading.Lock()

    def new(self) -> list[Message]:
        """Records that arrived since the last call (everything on the first), in offset order per partition."""
        with self._lock:
            if self.positions is None:
                self.positions = all_partitions(self.settings, self.topics)
            out = list(read_to_end(self.settings, dict(self.positions)))
            for m in out:
                tp = (m.topic() or "", m.partition() or 0)
                self.positions[tp] = max(self.positions.get(tp, 0), (m.offset() or 0) + 1)
            return out
