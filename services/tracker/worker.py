"""The tracker: folds the receipts topic into Redis, committing only what Redis holds.

Subscribers never talk to Redis, so Redis being down cannot stop applying; receipts wait in Kafka and the
tracker, paused meanwhile, catches up when Redis is back.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import redis
from confluent_kafka import Consumer, Message

from onceonly.errors import ConfigError
from onceonly.kafka import confluent_consumer_config
from onceonly.settings import Settings
from services.subscriber.codec import Codec, registry_unavailable
from services.subscriber.polling import KAFKA_LOG, commit, next_batch, wait_paused
from services.subscriber.receipts import RECEIPTS_TOPIC
from services.tracker.store import ReceiptStore

log = logging.getLogger(__name__)


class Tracker:
    """One tracker worker (run more in the same group to share the receipts partitions)."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        *,
        store: ReceiptStore | None = None,
        batch_size: int = 1000,
        group: str = "tracker",
        backoff_max: float = 10.0,
    ) -> None:
        if store is None:
            if not settings.redis_url:
                raise ConfigError("the tracker needs Redis", hint="set ONCEONLY_REDIS_URL")
            store = ReceiptStore.from_url(settings.redis_url, settings.topic_prefix)
        self.settings = settings
        self.codec = codec
        self.store = store
        self.batch_size = batch_size
        self.group_id = f"{settings.topic_prefix}{group}"
        self.topic = settings.topic(RECEIPTS_TOPIC)
        self.backoff_max = backoff_max
        self.stats: Counter[str] = Counter()
        self._carry: list[Message] = []

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(confluent_consumer_config(self.settings, self.group_id, logger=KAFKA_LOG))
        try:
            consumer.subscribe([self.topic])
            while not stop.is_set():
                batch = next_batch(consumer, self.batch_size, self._carry)
                if batch:
                    self._fold(consumer, batch, stop)
        finally:
            consumer.close()
            log.info("tracker stopped: %s", dict(self.stats))

    def _fold(self, consumer: Consumer, batch: list[Message], stop: threading.Event) -> None:
        """Decode and fold one batch, retrying while Redis (or the registry) is down; commit once it is in."""
        delay = 0.5
        while not stop.is_set():
            try:
                self.store.fold(self._decode(batch))
            except (redis.RedisError, _RegistryDown) as e:
                self.stats["retries"] += 1
                log.warning("tracker: %s; pausing, retry in %.1fs", e, delay)
                wait_paused(consumer, delay, stop, self._carry)
                delay = min(delay * 2, self.backoff_max)
                continue
            consumer.resume(consumer.assignment())
            commit(consumer, ((m.topic() or "", m.partition() or 0, m.offset() or 0) for m in batch))
            self.stats["folded"] += len(batch)
            return

    def _decode(self, batch: list[Message]) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for m in batch:
            try:
                records.append(dict(self.codec.decode(m.value()).record))
            except Exception as e:
                if registry_unavailable(e):
                    raise _RegistryDown(str(e)) from e
                self.stats["undecodable"] += 1
                log.error("tracker: receipt %s/%s@%s cannot be decoded: %s", m.topic(), m.partition(), m.offset(), e)
        return records


class _RegistryDown(Exception):
    pass
