"""One consumed record on its way through a batch, and what its outcome becomes on the wire: a receipt for every
record, a dead letter (with the original bytes and Kafka Connect's error headers) for one that cannot be applied.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.sinks import Change, Outcome, RecordRejected, Result
from onceonly import metrics
from onceonly.deadletter import dead_letter_headers
from onceonly.logs import change_fields
from services.subscriber.codec import Codec, registry_unavailable
from services.subscriber.outbox import Outbox
from services.subscriber.receipts import receipt, receipt_schema

log = logging.getLogger(__name__)


class PublishUnavailable(Exception):
    """A receipt could not be encoded because the registry is down: retry before committing anything."""


class Record(Protocol):
    """A consumed record as both hosts hand it over (confluent-kafka's ``Message``, or ``faust_app.FaustRecord``)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...


@dataclass
class Item:
    """One consumed record: where it came from, and what decoding and the sink made of it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    message: Record
    change: Change | None = None
    event_id: str | None = None
    schema_id: int | None = None
    decode_error: BaseException | None = None
    result: Result | None = None
    applied_at: int = 0
    outcome: Outcome | None = None

    @classmethod
    def of(cls, message: Record) -> Item:
        return cls(
            topic=message.topic() or "",
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=message.key(),
            value=message.value(),
            message=message,
        )

    @property
    def decided(self) -> bool:
        return self.decode_error is not None or self.result is not None

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        """The record's own headers, as pairs."""
        raw = self.message.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]


class Reporter:
    """Queues a holder's receipts and dead letters, and counts outcomes once they are committed."""

    def __init__(self, holder: str, codec: Codec, dlq_topic: str, receipts_topic: str) -> None:
        self.holder = holder
        self.codec = codec
        self.dlq_topic = dlq_topic
        self.receipts_topic = receipts_topic

    def queue(self, outbox: Outbox, it: Item) -> Outcome:
        """Queue the dead letter (if any) and the receipt of one decided record; returns its outcome."""
        outcome: Outcome
        reason: str | None
        if it.decode_error is not None:
            error: BaseException | None = it.decode_error
            outcome, reason = "dead_lettered", f"{type(it.decode_error).__name__}: {it.decode_error}"
        else:
            assert it.result is not None
            error, outcome, reason = it.result.error, it.result.outcome, it.result.reason
        repeat = it.result is not None and it.result.repeat
        if outcome == "dead_lettered":
            headers = dead_letter_headers(
                connector=f"subscriber.{self.holder}",
                topic=it.topic,
                partition=it.partition,
                offset=it.offset,
                error=error or RecordRejected(reason or "rejected"),
                holder=self.holder,
                event_id=it.event_id,
                schema_id=it.schema_id,
                stage="VALUE_CONVERTER" if it.decode_error is not None else "TASK_PUT",
                original=it.headers,
            )
            outbox.add(self.dlq_topic, it.key, it.value, headers)
        record = receipt(self.holder, outcome, it.change, reason=reason, key=it.key, event_id=it.event_id)
        if repeat:  # a redelivery of a change the store had applied: say so again (its receipt may be lost)
            assert it.result is not None
            record["already_applied_at"] = it.result.applied_at or record["applied_at"]
        it.applied_at = record["applied_at"]
        try:
            value = self.codec.encode(receipt_schema(), f"{self.receipts_topic}-value", record)
        except Exception as e:
            if registry_unavailable(e):
                raise PublishUnavailable(f"cannot encode a receipt now: {e}") from e
            raise
        outbox.add(self.receipts_topic, record["event_id"].encode(), value)
        return outcome

    def count(self, done: list[Item], outcomes: list[Outcome], stats: Counter[str]) -> None:
        """Stats and metrics for a committed batch (labels looked up once per batch, not per change)."""
        counts = Counter(outcomes)
        stats.update(counts)
        for outcome, n in counts.items():
            metrics.APPLIED.labels(holder=self.holder, outcome=outcome).inc(n)
        if counts["dead_lettered"]:
            metrics.DEAD_LETTERS.labels(service="subscriber", holder=self.holder).inc(counts["dead_lettered"])
        propagation = metrics.PROPAGATION.labels(holder=self.holder)
        skips = log.isEnabledFor(logging.DEBUG)
        for it, outcome in zip(done, outcomes, strict=True):
            if outcome == "applied":
                if it.change is not None and it.change.recorded_at:
                    propagation.observe(max((it.applied_at - it.change.recorded_at) / 1000, 0.0))
            elif outcome == "dead_lettered" or skips:
                self._log(it, outcome)

    def _log(self, it: Item, outcome: Outcome) -> None:
        """The line an operator searches by event id or holder: a dead letter (warning), a skip (debug)."""
        if it.decode_error is not None:
            reason: str | None = f"{type(it.decode_error).__name__}: {it.decode_error}"
        else:
            reason = it.result.reason if it.result is not None else None
        log.log(
            logging.WARNING if outcome == "dead_lettered" else logging.DEBUG,
            "%s %s[%d]@%d: %s",
            outcome.replace("_", " "),
            it.topic,
            it.partition,
            it.offset,
            reason or "no reason given",
            extra=change_fields(it.event_id, self.holder, it.topic, it.partition, it.offset, outcome=outcome),
        )


def stuck_at(pending: list[Item]) -> dict[str, Any]:
    """``extra=`` for a retry line: the first record of the batch not decided yet, where the worker waits."""
    it = next((i for i in pending if not i.decided), None)
    return {} if it is None else change_fields(it.event_id, None, it.topic, it.partition, it.offset)
