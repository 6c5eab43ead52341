"""The subscriber as a faust-streaming app: one agent per department takes batches from its inbox and hands each to
the same ``Applier`` the consumer loop uses.

What Faust would do on its own, and what this host does instead, so that its guarantees hold:

- Commits: ``Stream.take()`` acks its buffer in a ``finally`` block, even when applying it failed. The agent uses
  ``noack_take()`` and acks only the records the applier returns (applied, or dead-lettered, and their receipts
  delivered), and commits them right after, as the loop does, so at most one applied batch is ever
  uncommitted (a redelivery of it is then recognised as a repeat of its apply, change by change). Faust commits
  only up to the first offset not acked (its gap tracking), so an offset is never committed past a change that
  is not applied.
- Blocking work: the sink is synchronous (SQLAlchemy, HTTP), so a batch is settled in one thread of its own; the
  event loop keeps heartbeating meanwhile, and the single thread keeps batches in order.
- Pausing: while the sink or registry is down the agent holds its batch and retries; Faust's flow control stops
  fetching a partition once its stream buffer is full (``stream_buffer_maxsize``), so consumption pauses while the
  worker stays in its group. Not ``pause_partitions``: in the sink-down test, partitions paused and resumed by
  hand while the agent waited were never delivered again (the worker stalled after the store came back, its
  commit stuck before the first undelivered record; the cause inside Faust/aiokafka was not traced).
- Shutdown: a Faust worker was seen waiting minutes on SIGTERM. There is no ``faust.Worker`` here: the
  supervisor's stop flag ends the batch in flight (the applier watches it), the agent acks what was settled, this
  host commits, then stops the app with a deadline (``stream_wait_empty=False``), and the supervisor cuts the
  process if even that hangs. A batch abandoned by a cut is read again and skipped as duplicates.
- A crash (a bug, not a bad record: those are dead letters) stops the worker instead of letting Faust restart the
  agent past the batch that failed; the supervisor reports it and stops the process.

Scaling is Faust's consumer group: workers of one department share its partitions.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.protocol.group import LeaveGroupRequest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from connectors.sinks import Sink
from onceonly import metrics
from onceonly.kafka import confluent_config, confluent_producer_config, faust_app_settings, kafka_python_config
from onceonly.logs import log_context
from onceonly.settings import Settings
from services.subscriber.codec import Codec
from services.subscriber.config import SubscriberConfig
from services.subscriber.host import Host
from services.subscriber.outcomes import Item
from services.subscriber.polling import KAFKA_LOG
from services.subscriber.worker import check_topics

log = logging.getLogger(__name__)

BATCH_WAIT = 0.05
"""Seconds the agent waits for a batch to fill before it settles what it has (Faust's ``take(within=...)``)."""
FAUST_COMMITS_OFF = 10**9
STOP_DEADLINE = 5.0


class FaustRecord:
    """A Faust transport message seen through the ``Record`` protocol the applier reads (raw bytes, no serde)."""

    __slots__ = ("_message",)

    def __init__(self, message: Any) -> None:
        self._message = message

    def topic(self) -> str:
        return str(self._message.topic)

    def partition(self) -> int:
        return int(self._message.partition)

    def offset(self) -> int:
        return int(self._message.offset)

    def key(self) -> bytes | None:
        key: bytes | None = self._message.key
        return key

    def value(self) -> bytes | None:
        value: bytes | None = self._message.value
        return value

    def headers(self) -> Any:
        return self._message.headers


class FaustSubscriber(Host):
    """One worker of one department's subscriber, hosted by a faust-streaming app. ``run(stop)`` returns soon
    after ``stop`` is set."""

    def __init__(self, config: SubscriberConfig, settings: Settings, codec: Codec, *, sink: Sink | None = None) -> None:
        super().__init__(config, settings, codec, sink=sink)
        self._failure: BaseException | None = None

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop``; the batch in flight is finished (or abandoned if its sink is down) and committed."""
        with log_context(holder=self.holder):
            if not self.applier.open_sink(stop):
                return
            producer = Producer(
                confluent_producer_config(self.settings, logger=KAFKA_LOG, **{"delivery.report.only.error": True})
            )
            started = False
            try:
                admin = AdminClient(confluent_config(self.settings, logger=KAFKA_LOG))
                check_topics(admin, [*self.topics, self.applier.dlq_topic, self.applier.receipts_topic])
                started = True
                asyncio.run(self._serve(producer, stop))
            finally:
                self.sink.close()
                producer.flush(1.0)
                if started:
                    log.info("subscriber %s stopped: %s", self.holder, dict(self.stats))
            if self._failure is not None:
                raise self._failure

    async def _serve(self, producer: Producer, stop: threading.Event) -> None:
        # Faust wants a data directory; no table keeps state here, so a scratch one that leaves nothing behind.
        with tempfile.TemporaryDirectory(prefix="onceonly-faust-") as datadir:
            await self._serve_in(producer, stop, datadir)

    async def _serve_in(self, producer: Producer, stop: threading.Event, datadir: str) -> None:
        app = self._app(datadir)
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(1, thread_name_prefix=f"apply-{self.holder}")
        idle, crashed = asyncio.Event(), asyncio.Event()
        idle.set()

        def wait(seconds: float, stop: threading.Event) -> None:
            """Runs in the apply thread: sleep between retries; the event loop keeps heartbeating meanwhile."""
            stop.wait(seconds)

        async def apply(stream: Any) -> None:  # a faust.Stream: StreamT does not declare noack_take
            async for events in stream.noack_take(self.config.batch_size, within=BATCH_WAIT):
                idle.clear()
                try:
                    items = [Item.of(FaustRecord(e.message)) for e in events]
                    done = await loop.run_in_executor(pool, self.applier.settle, items, producer, stop, wait)
                    for event in events[: len(done)]:
                        await stream.ack(event)
                    await _commit_now(app)  # at most one applied batch is ever uncommitted
                    self.applier.count(done)
                    self.lag.committed({it.tp: it.offset + 1 for it in done})
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # a bug: stop here rather than let Faust restart the agent past this batch
                    self._failure = e
                    crashed.set()
                    return
                finally:
                    idle.set()

        topic = app.topic(*self.topics, key_serializer="raw", value_serializer="raw")
        app.agent(topic, name=f"subscriber.{self.holder}")(apply)
        await app.start()
        log.info("subscriber %s: %s -> %r (faust app %s)", self.holder, ",".join(self.topics), self.sink, self.group_id)
        try:
            while not stop.is_set() and not crashed.is_set():
                self._report_lag(app)
                await asyncio.sleep(0.1)
            await _bounded(idle.wait(), max(self.config.shutdown_grace - STOP_DEADLINE, 1.0))
            await _bounded(_commit_now(app), STOP_DEADLINE)
        finally:
            membership = _membership(app)
            await _bounded(app.stop(), STOP_DEADLINE)
            if self.settings.broker_quirks == "tansu" and membership is not None and membership[1] == 0:
                await _bounded(leave_group(self.settings, self.group_id, membership[0]), STOP_DEADLINE)
            # A batch stuck in a store that stopped answering keeps this worker alive, so the supervisor cuts the
            # process after its grace period (returning would leave the process waiting on that thread forever).
            pool.shutdown(wait=True, cancel_futures=True)

    def _app(self, datadir: str) -> faust.App:
        app = faust.App(
            self.group_id,
            **faust_app_settings(self.settings),
            consumer_auto_offset_reset="earliest",
            # The agent commits after every batch. Faust's own commits (on a timer, every N acks) would race it: a
            # commit Faust started earlier, carrying older offsets, could land after the agent's; and the agent's
            # commit() would return without committing while one of Faust's is in flight. So they are off.
            broker_commit_interval=FAUST_COMMITS_OFF,
            broker_commit_every=FAUST_COMMITS_OFF,
            stream_buffer_maxsize=max(self.config.batch_size * 2, 1000),
            datadir=datadir,
            loghandlers=[],
        )

        @app.on_partitions_assigned.connect
        async def _assigned(_app: Any, /, *args: Any, signal: Any, **_kwargs: Any) -> None:
            (assigned,) = args
            self.assigned = {(tp.topic, tp.partition) for tp in assigned if tp.topic in self.topics}
            self.assignments += 1
            metrics.REBALANCES.labels(service=f"subscriber.{self.holder}").inc()
            self.lag.forget_all()
            log.info("subscriber %s: assigned %s", self.holder, sorted(self.assigned))

        return app

    def _report_lag(self, app: faust.App) -> None:
        """Each partition's end from this worker's own fetches (as ``LagMeter`` documents), minus what it acked."""
        ends: dict[tuple[str, int], int] = {}
        for tp in app.consumer.assignment():
            try:
                high = app.consumer.highwater(tp)
            except Exception:  # no fetch answered for it yet
                continue
            if isinstance(high, int):
                ends[(tp.topic, tp.partition)] = high
        self.lag.report_ends(ends)


async def _bounded(awaitable: Any, seconds: float) -> None:
    """Await at most ``seconds``; a shutdown step that hangs is logged and left to the supervisor's cut."""
    try:
        await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        log.warning("subscriber: a shutdown step took more than %.0fs; going on", seconds)


async def _commit_now(app: faust.App) -> None:
    """Commit what was acked, now: ``force_commit`` (on Faust's Consumer, not in its interface) does not return
    early when another commit is in flight, as ``commit()`` does."""
    consumer: Any = app.consumer
    await consumer.force_commit()


def _membership(app: faust.App) -> tuple[str, int] | None:
    """(member id, generation) of the app's aiokafka consumer. Private attributes, read only for ``leave_group``."""
    try:
        coordinator = app.consumer._thread._consumer._coordinator  # type: ignore[attr-defined]
        return str(coordinator.member_id), int(coordinator.generation)
    except (AttributeError, TypeError, ValueError):
        return None


async def leave_group(settings: Settings, group: str, member_id: str) -> None:
    """Say goodbye for a consumer that did not (``broker_quirks: tansu`` only).

    aiokafka sends LeaveGroup only when its generation is above 0, as Apache Kafka's always is; the embedded broker
    numbers the first generation 0, so a stopped worker stayed a member until its session timed out: the next
    worker's join waited for it, and an offset reset (``kafka-consumer-groups --reset-offsets``) was refused with
    UNKNOWN_MEMBER_ID meanwhile. This sends the request aiokafka skipped, from a client of its own.
    """
    client = AIOKafkaClient(**kafka_python_config(settings))
    try:
        await client.bootstrap()
        node = await client.coordinator_lookup(CoordinationType.GROUP, group)
        await client.send(node, LeaveGroupRequest(group, member_id))
        log.debug("subscriber: left group %s as %s", group, member_id)
    except Exception as e:  # the broker drops the member at its session timeout anyway
        log.warning("subscriber: could not leave group %s (%s); it expires on its own", group, e)
    finally:
        await client.close()
