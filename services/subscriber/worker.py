"""The subscriber on a plain confluent-kafka consumer loop (``engine: loop``); the default host is the Faust agent
in ``faust_app.py``. Both hand batches to the same ``Applier``; this one differs in how it consumes:

- Commits: synchronous, right after a batch's transaction committed and its dead letters and receipts were
  delivered, for exactly the records the applier settled.
- Pausing: while the sink is down the loop pauses its partitions and keeps polling, so it stays in the group (no
  ``max.poll.interval`` expiry, no rebalance) and resumes exactly where it was.
- Shutdown: the loop checks its stop flag between steps and its own waits are bounded; a store that stops answering
  mid-statement is covered by the supervisor, which cuts the process after a grace period.
- Speed: raw consume on the embedded broker measured 492k records/s with confluent-kafka against 220k/s with
  aiokafka, the client under Faust (DESIGN.md); ``bench/apply.py`` measures both hosts applying.

Scaling is the consumer group's: workers of one department share its partitions; an entity's changes stay in one
partition, so per-entity order holds across workers. A redelivery after a crash or rebalance is harmless: the
version guard turns it into ``skipped_duplicate``, marked as a repeat of the apply (``already_applied_at``) when the
store had applied it, so a receipt lost between the store's commit and the send is made good.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.sinks import Sink
from onceonly import metrics
from onceonly.errors import ConfigError
from onceonly.kafka import confluent_consumer_config, confluent_producer_config
from onceonly.logs import log_context
from onceonly.settings import Settings
from services.subscriber.codec import Codec
from services.subscriber.config import SubscriberConfig
from services.subscriber.host import Host
from services.subscriber.outcomes import Item
from services.subscriber.polling import KAFKA_LOG, commit, consumer_tuning, next_batch, wait_paused

log = logging.getLogger(__name__)


class Subscriber(Host):
    """One worker of one department's subscriber on a plain consumer loop. ``run(stop)`` returns soon after ``stop``."""

    def __init__(self, config: SubscriberConfig, settings: Settings, codec: Codec, *, sink: Sink | None = None) -> None:
        super().__init__(config, settings, codec, sink=sink)
        self._carry: list[Message] = []
        self._consumer: Consumer | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop``; the batch in flight is finished (or abandoned if its sink is down) and committed."""
        with log_context(holder=self.holder):  # every line of this worker's thread names its holder, at no cost
            self._run(stop)

    def _run(self, stop: threading.Event) -> None:
        if not self.applier.open_sink(stop):
            return
        consumer = Consumer(
            confluent_consumer_config(self.settings, self.group_id, logger=KAFKA_LOG, **consumer_tuning(self.settings))
        )
        # Only failed deliveries need a report (the outbox re-sends them); a report per receipt cost a callback each.
        producer = Producer(
            confluent_producer_config(self.settings, logger=KAFKA_LOG, **{"delivery.report.only.error": True})
        )
        self._consumer = consumer
        started = False
        try:
            check_topics(consumer, [*self.topics, self.applier.dlq_topic, self.applier.receipts_topic])
            consumer.subscribe(
                self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
            )
            log.info("subscriber %s: %s -> %r (group %s)", self.holder, ",".join(self.topics), self.sink, self.group_id)
            started = True
            while not stop.is_set():
                batch = next_batch(consumer, self.config.batch_size, self._carry, self.lag)
                if batch:
                    self._process(batch, producer, stop)
        finally:
            try:
                consumer.close()
            finally:
                self.sink.close()
                producer.flush(1.0)
                self._consumer = None
            if started:  # a worker refused at start says so once, as the command's error line
                log.info("subscriber %s stopped: %s", self.holder, dict(self.stats))

    # -- rebalances ------------------------------------------------------------------------------
    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned.update((p.topic, p.partition) for p in partitions)
        self.assignments += 1
        metrics.REBALANCES.labels(service=f"subscriber.{self.holder}").inc()
        self.lag.forget(partitions)
        log.info("subscriber %s: assigned %s", self.holder, sorted(self.assigned))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Forget what was read but not finished from these partitions: the next owner reads it again."""
        gone = {(p.topic, p.partition) for p in partitions}
        self.assigned.difference_update(gone)
        self.lag.forget(partitions)
        self.applier.pending[:] = [it for it in self.applier.pending if it.tp not in gone]
        self._carry[:] = [m for m in self._carry if (m.topic(), m.partition()) not in gone]

    # -- the loop --------------------------------------------------------------------------------
    def _process(self, batch: Sequence[Message], producer: Producer, stop: threading.Event) -> None:
        """Settle the batch (pausing every partition while the sink is down), then commit what was settled."""
        consumer = self._consumer
        assert consumer is not None
        paused = False

        def wait(seconds: float, stop: threading.Event) -> None:
            nonlocal paused
            paused = True
            wait_paused(consumer, seconds, stop, self._carry)

        try:
            done = self.applier.settle([Item.of(m) for m in batch], producer, stop, wait)
        finally:
            if paused:
                consumer.resume(consumer.assignment())
        if done:
            commit(consumer, ((it.topic, it.partition, it.offset) for it in done), self.lag)
            self.applier.count(done)


def check_topics(client: Consumer | AdminClient, topics: Sequence[str]) -> None:
    """Refuse to start, with the command that fixes it, when a topic the worker reads or writes is missing."""
    try:
        known = client.list_topics(timeout=5).topics
    except KafkaException as e:
        raise ConfigError(f"the Kafka cluster did not answer: {e}", hint="is the stack up?") from e
    for topic in topics:
        if topic not in known:
            raise ConfigError(f"topic {topic} does not exist", hint="run: onceonly topics apply")
