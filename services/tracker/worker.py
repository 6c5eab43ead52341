"""The tracker: folds the receipts topic into Redis, and keeps in Redis how far it folded.

Subscribers never talk to Redis, so Redis being down cannot stop applying; receipts wait in Kafka and the
tracker, paused meanwhile, catches up when Redis is back.

Where to read from is Redis's word, not the group's committed offset: the position is written in the fold's own
transaction, so it always says what *this* Redis holds. A Redis that comes back empty (restarted without
persistence, flushed, failed over to a blank replica) has no positions, and the tracker folds the receipts topic
again from its start, at assignment or as soon as it sees the positions gone. Folding twice is harmless (the fold
keeps the most conclusive outcome, and a trace entry is a set member). The group still commits, for lag tools.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import redis
from confluent_kafka import Consumer, Message, TopicPartition

from onceonly import metrics
from onceonly.errors import ConfigError
from onceonly.kafka import confluent_consumer_config
from onceonly.settings import Settings
from services.subscriber.codec import Codec, registry_unavailable
from services.subscriber.polling import KAFKA_LOG, LagMeter, commit, next_batch, next_offsets, wait_paused
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
        idle_check: float = 5.0,
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
        self.idle_check = idle_check
        self.stats: Counter[str] = Counter()
        self._carry: list[Message] = []
        self._folded: dict[int, int] = {}  # partition -> the next offset, as this process last wrote it to Redis
        self._unplaced: set[int] = set()  # assigned while Redis was down: placed by the first fold that reaches it
        self.lag = LagMeter(self.group_id)

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(confluent_consumer_config(self.settings, self.group_id, logger=KAFKA_LOG))
        try:
            consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            checked = time.monotonic()
            while not stop.is_set():
                batch = next_batch(consumer, self.batch_size, self._carry, self.lag)
                if batch:
                    self._fold(consumer, batch, stop)
                    checked = time.monotonic()
                elif time.monotonic() - checked > self.idle_check:  # a quiet topic: is Redis still what it was?
                    checked = time.monotonic()
                    try:
                        self._rewind(consumer, [])
                    except redis.RedisError as e:
                        log.warning("tracker: %s", e)
        finally:
            consumer.close()
            log.info("tracker stopped: %s", dict(self.stats))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start each partition where Redis says the fold stands; from the beginning where it has no position."""
        metrics.REBALANCES.labels(service="tracker").inc()
        self.lag.forget(partitions)
        self._carry.clear()
        try:
            held = self.store.positions(self.topic)
        except redis.RedisError as e:  # placed by the first fold that reaches Redis
            log.warning("tracker: Redis unavailable at assignment (%s); positions taken when it answers", e)
            self._unplaced |= {tp.partition for tp in partitions}
            return
        for tp in partitions:
            tp.offset = held.get(tp.partition, 0)  # 0 gone to retention: auto.offset.reset=earliest
            self._folded[tp.partition] = held.get(tp.partition, 0)
        consumer.assign(partitions)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.lag.forget(partitions)
        for tp in partitions:
            self._folded.pop(tp.partition, None)
            self._unplaced.discard(tp.partition)

    def _rewind(self, consumer: Consumer, batch: list[Message]) -> None:
        """Seek back to Redis's positions where they are behind what this process wrote (Redis lost the fold), or
        where the partition was assigned while Redis was down; their records in ``batch`` are dropped."""
        held = self.store.positions(self.topic)
        assigned = {tp.partition for tp in consumer.assignment()}
        lost = {p for p, o in self._folded.items() if o > held.get(p, 0) and p in assigned}
        if lost:
            log.warning("tracker: Redis lost the fold of partitions %s (empty after a restart?): folding again", lost)
            self.stats["refolds"] += 1
        for p in (lost | self._unplaced) & assigned:
            self._folded[p] = held.get(p, 0)
            consumer.seek(TopicPartition(self.topic, p, held.get(p, 0)))
        moved = lost | self._unplaced
        self._unplaced.clear()
        if moved:
            self._carry[:] = [m for m in self._carry if m.partition() not in moved]
            batch[:] = [m for m in batch if m.partition() not in moved]

    def _fold(self, consumer: Consumer, batch: list[Message], stop: threading.Event) -> None:
        """Decode and fold one batch, retrying while Redis (or the registry) is down; commit once it is in."""
        delay = 0.5
        while not stop.is_set():
            try:
                self._rewind(consumer, batch)
                read = [(m.topic() or "", m.partition() or 0, m.offset() or 0) for m in batch]
                positions = next_offsets(read)
                records = self._decode(batch)
                self.store.fold(records, positions)
            except (redis.RedisError, _RegistryDown) as e:
                self.stats["retries"] += 1
                log.warning("tracker: %s; pausing, retry in %.1fs", e, delay)
                wait_paused(consumer, delay, stop, self._carry)
                delay = min(delay * 2, self.backoff_max)
                continue
            consumer.resume(consumer.assignment())
            self._folded.update({p: o for (_, p), o in positions.items()})
            commit(consumer, read, self.lag)
            self.stats["folded"] += len(batch)
            for holder, n in Counter(str(r.get("holder", "")) for r in records).items():
                metrics.RECEIPTS_FOLDED.labels(holder=holder).inc(n)
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
