"""Lag per holder: how many records in its inbox are not processed yet, and how long the oldest has waited.

The method, the same on Apache Kafka and on the embedded broker:

- The end of ``inbox.<holder>`` is the partition's high watermark (``holder_lag.end_offsets``): ListOffsets on
  Apache Kafka; with ``broker_quirks: tansu`` the high watermark a fetch response reports, because the embedded
  broker's ListOffsets answers "latest" with the newest batch's base offset + 1 (DESIGN.md).
- What the holder has processed is its subscriber group's committed offset. The subscriber commits an offset only
  after the records before it were applied (or skipped, or dead-lettered) and their receipts were acknowledged, so
  ``end - committed`` is exactly the records whose outcome is not known yet; a record the ledger says was delivered
  is in that count until its receipt exists. Reading committed offsets does not join the group.
- The age of the oldest is read, not estimated: the record at the committed offset is fetched, and its timestamp
  (when the distributor, or a replay, wrote it into the inbox) is the oldest waiting delivery. Fetching it also
  proves the end: a partition whose committed offset equals the end yields no record.

The distributor's own backlog (changes not yet distributed to anyone) is measured the same way on the change topics
against the distributor's group; it is shown as the row ``(distributor)``.

Which group and topics are a holder's subscriber's: with the ``subscribers:`` section of ``onceonly.yaml``, the
ones it configures (``group_id``, ``source_topic``), since a subscriber may run under its own group; without it, the
defaults ``subscriber.<holder>`` on ``inbox.<holder>``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, TopicPartition

from onceonly.catalog import load_catalog, load_departments
from onceonly.errors import BrokerUnavailable
from onceonly.settings import Settings
from services.distributor.reading import reader
from services.operator.holder_lag import committed_offsets, end_offsets, subscriber_group

if TYPE_CHECKING:
    from services.subscriber.config import SubscribersConfig

TP = tuple[str, int]
DISTRIBUTOR_ROW = "(distributor)"


@dataclass
class PartitionLag:
    topic: str
    partition: int
    end: int
    committed: int
    oldest_ms: int | None = None  # timestamp of the first record not processed yet

    @property
    def waiting(self) -> int:
        return max(self.end - self.committed, 0)


@dataclass
class Lag:
    """One holder (or the distributor): records waiting and the age of the oldest."""

    name: str
    group: str
    partitions: list[PartitionLag] = field(default_factory=list)
    measured_at: int = field(default_factory=lambda: int(time.time() * 1000))

    @property
    def waiting(self) -> int:
        return sum(p.waiting for p in self.partitions)

    @property
    def oldest_ms(self) -> int | None:
        times = [p.oldest_ms for p in self.partitions if p.waiting and p.oldest_ms is not None]
        return min(times) if times else None

    @property
    def oldest_age_s(self) -> float | None:
        oldest = self.oldest_ms
        return None if oldest is None else max(self.measured_at - oldest, 0) / 1000

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "waiting": self.waiting,
            "oldest_age_s": self.oldest_age_s,
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "end": p.end,
                    "committed": p.committed,
                    "waiting": p.waiting,
                }
                for p in self.partitions
            ],
        }


def holders_with_inbox(settings: Settings, holder: str | None) -> list[str]:
    """The holder asked for (checked), or every department whose inbox exists."""
    departments = load_departments()
    if holder is not None:
        departments.get(holder)
        return [holder]
    consumer = reader(settings)
    try:
        known = consumer.list_topics(timeout=10).topics
    except Exception as e:
        raise BrokerUnavailable(f"the Kafka cluster did not answer: {e}", hint="is the stack up?") from e
    finally:
        consumer.close()
    return [code for code in departments.codes() if settings.topic(f"inbox.{code}") in known]


def subscribers_read(
    settings: Settings, holder: str | None, subscribers: SubscribersConfig | None
) -> list[tuple[str, str, list[str]]]:
    """(holder, consumer group, topics) of each subscriber to measure: as configured, else the defaults."""
    if subscribers is not None and subscribers.root:
        return [
            (s.department, subscriber_group(settings, s.department, s.group), [settings.topic(t) for t in s.topics])
            for s in subscribers.select(holder)
        ]
    return [
        (h, subscriber_group(settings, h), [settings.topic(f"inbox.{h}")]) for h in holders_with_inbox(settings, holder)
    ]


def measure(
    settings: Settings,
    holder: str | None = None,
    *,
    distributor: bool = True,
    subscribers: SubscribersConfig | None = None,
) -> list[Lag]:
    """Lag of one holder (or of every holder with an inbox, or every configured subscriber), and of the distributor."""
    rows = subscribers_read(settings, holder, subscribers)
    if distributor and holder is None:
        changes = [settings.topic(t.name) for t in load_catalog().topics if t.entity_type and not t.per_entity_type]
        rows.append((DISTRIBUTOR_ROW, f"{settings.topic_prefix}distributor", changes))
    out: list[Lag] = []
    for name, group, topics in rows:
        ends = end_offsets(settings, topics)
        done = committed_offsets(settings, group, ends)
        parts = [PartitionLag(t, p, end, min(done.get((t, p), 0), end)) for (t, p), end in sorted(ends.items())]
        out.append(Lag(name, group, parts))
    _read_oldest(settings, [p for lag in out for p in lag.partitions if p.waiting])
    return out


def _read_oldest(settings: Settings, lagging: Iterable[PartitionLag], timeout: float = 15.0) -> None:
    """Fetch the record at each lagging partition's committed offset: its timestamp is the oldest waiting one."""
    todo = {(p.topic, p.partition): p for p in lagging}
    if not todo:
        return
    consumer = reader(settings)
    try:
        consumer.assign([TopicPartition(t, n, p.committed) for (t, n), p in todo.items()])
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            tp = (message.topic() or "", message.partition() or 0)
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF and tp in todo:
                    todo.pop(tp).end = message.offset() or 0  # nothing there after all: the end is here
                continue
            part = todo.pop(tp, None)
            if part is not None:
                part.oldest_ms = message.timestamp()[1]
                consumer.pause([TopicPartition(*tp)])
    finally:
        consumer.close()
