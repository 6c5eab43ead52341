"""What a subscriber does with a batch, whichever consumer hands it over: decode, apply through the sink, publish
dead letters and receipts; while the sink or registry is down, wait and try again.

Both hosts of a subscriber (the Faust agent in ``faust_app.py`` and the plain consumer loop in ``worker.py``) use
this, so a change is decided the same way whichever runs; they differ only in how they consume, pause and commit.
The host commits (or acks) exactly the records ``settle`` returns, never more: a record not returned was not
applied, or its receipt was not delivered, and is read again by whoever owns its partition next.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

from confluent_kafka import Producer

from connectors.sinks import Change, MalformedChange, Sink, TransientSinkError, build_sink
from onceonly.deadletter import framed_schema_id
from onceonly.settings import Settings
from onceonly.signing import SignatureRefused, inbox_verifier
from services.subscriber.codec import Codec, registry_unavailable
from services.subscriber.config import SubscriberConfig
from services.subscriber.outbox import Outbox
from services.subscriber.outcomes import Item, PublishUnavailable, Reporter, stuck_at
from services.subscriber.receipts import RECEIPTS_TOPIC

log = logging.getLogger(__name__)

Wait = Callable[[float, threading.Event], None]
"""How a host waits between retries: ``wait(seconds, stop)``, keeping its group membership alive meanwhile."""


def holder_sink(config: SubscriberConfig, settings: Settings) -> Sink:
    """The department's sink as its subscriber (and ``subscriber check``) opens it. The holder name it keeps
    watermarks under carries the deployment's topic prefix, as the group id does: two deployments never share them."""
    return build_sink(
        config.sink,
        delete_policy=config.delete_policy,
        holder=f"{settings.topic_prefix}{config.department}",
        state_dir=settings.state_dir,
    )


class DecodeUnavailable(Exception):
    """Decoding failed for a reason outside the record (the registry is down): retry, do not dead-letter."""


class Applier:
    """One department's decisions: sink, codec, receipts and dead letters, and the counts of what happened."""

    def __init__(self, config: SubscriberConfig, settings: Settings, codec: Codec, sink: Sink | None = None) -> None:
        self.config = config
        self.codec = codec
        self.sink = sink or holder_sink(config, settings)
        self.holder = config.department
        self.dlq_topic = settings.topic(f"dlq.{config.department}")
        self.receipts_topic = settings.topic(RECEIPTS_TOPIC)
        self.reporter = Reporter(self.holder, codec, self.dlq_topic, self.receipts_topic)
        self.verifier = inbox_verifier(settings)  # None unless ONCEONLY_SIGNATURES=require
        self.stats: Counter[str] = Counter()
        self.pending: list[Item] = []
        """The batch in flight; a host drops the records of a partition it lost from here."""

    def open_sink(self, stop: threading.Event) -> bool:
        """Open the sink, waiting out a store that is down at startup (a bad mapping still fails at once)."""
        delay = 0.5
        while not stop.is_set():
            try:
                self.sink.open()
                return True
            except TransientSinkError as e:
                log.warning("subscriber %s: sink not available (%s); retrying in %.1fs", self.holder, e, delay)
                stop.wait(delay)
                delay = min(delay * 2, self.config.retry_backoff_max)
        return False

    def settle(self, items: list[Item], producer: Producer, stop: threading.Event, wait: Wait) -> list[Item]:
        """Decide every record and publish its outcome; returns the records the host may now commit.

        While the sink or registry is down it waits (``wait``) and tries again. Asked to stop meanwhile, the
        decided front of the batch is still published and returned; the rest is abandoned, uncommitted.
        """
        self.pending = items
        delay = 0.5
        try:
            while not stop.is_set():
                try:
                    self._decide([it for it in self.pending if not it.decided], stop)
                    return self._publish(producer, stop)
                except (TransientSinkError, DecodeUnavailable, PublishUnavailable) as e:
                    where = stuck_at(self.pending)
                    log.warning("subscriber %s: %s; pausing, retry in %.1fs", self.holder, e, delay, extra=where)
                    self.stats["retries"] += 1
                    wait(delay, stop)
                    delay = min(delay * 2, self.config.retry_backoff_max)
            try:
                return self._publish(producer, stop)
            except PublishUnavailable as e:
                log.warning("subscriber %s: stopping without publishing the last records: %s", self.holder, e)
                return []
        finally:
            self.pending = []

    def count(self, done: list[Item]) -> None:
        """Stats and metrics, once the host committed ``done``."""
        self.reporter.count(done, [it.outcome for it in done if it.outcome is not None], self.stats)

    def _decide(self, todo: list[Item], stop: threading.Event) -> None:
        """Decode what is not decoded yet, then apply every decodable change in one call to the sink."""
        for it in todo:
            if it.change is None and it.decode_error is None:
                self._decode(it)
        applicable = [it for it in todo if it.change is not None and it.result is None]
        if not applicable:
            return
        try:
            results = self.sink.apply([it.change for it in applicable if it.change is not None], stop)
        except TransientSinkError as e:
            for it, result in zip(applicable, e.completed, strict=False):
                it.result = result
            raise
        for it, result in zip(applicable, results, strict=True):
            it.result = result

    def _decode(self, it: Item) -> None:
        """Decode one record; bytes or an envelope that can never be applied become its ``decode_error``."""
        it.schema_id = framed_schema_id(it.value)
        try:
            if self.verifier is not None:  # before decoding: bytes nobody vouches for are not even parsed
                verdict = self.verifier.verify(it.key, it.value, it.headers, "")
                if not verdict.ok:
                    raise SignatureRefused(f"the inbox record's signature does not hold: {verdict}")
            decoded = self.codec.decode(it.value)
            it.schema_id = decoded.schema_id
            record = decoded.record
            if not isinstance(record, dict):
                raise MalformedChange(f"schema {decoded.schema_id} does not write a record but {type(record).__name__}")
            event_id = record.get("event_id")
            it.event_id = event_id if isinstance(event_id, str) else None
            it.change = Change.from_record(record)
        except Exception as e:
            if registry_unavailable(e):
                raise DecodeUnavailable(f"cannot decode {it.topic}/{it.partition}@{it.offset} now: {e}") from e
            it.decode_error = e

    def _publish(self, producer: Producer, stop: threading.Event) -> list[Item]:
        """Dead letters and receipts for the decided front of the batch, delivered; [] if stopped before that."""
        n = 0
        while n < len(self.pending) and self.pending[n].decided:
            n += 1
        done = self.pending[:n]
        if not done:
            return []
        outbox = Outbox(producer)
        outcomes = [self.reporter.queue(outbox, it) for it in done]
        if not outbox.deliver(stop):
            log.warning("subscriber %s: stopped before %d records were published; not committing", self.holder, n)
            return []
        for it, outcome in zip(done, outcomes, strict=True):
            it.outcome = outcome
        return done
