"""Dead letters as operators see them: where one came from, why it failed, and its id.

A dead letter's id is ``<source>:<partition>:<offset>``, its place on the dead-letter topic: ``source`` is the holder
(``dlq.<holder>``) or ``distributor`` (``dlq.distributor``). Dead-letter topics keep everything, so the id stays
valid for good, and it is short enough to type. Why it failed comes from the Kafka Connect error headers every
dead-letter writer adds (``onceonly.deadletter``), so records written by Connect itself read the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from onceonly.catalog import load_departments
from onceonly.errors import OnceonlyError
from onceonly.settings import Settings
from services.distributor.reading import partitions_of, read_to_end, reader
from services.operator.follow import Follower
from services.operator.holder_lag import end_offsets

DISTRIBUTOR = "distributor"
REDRIVE_OF = "onceonly.redrive.of"
REDRIVE_OPERATOR = "onceonly.redrive.operator"
_ID = re.compile(r"^(?P<source>[a-z][a-z0-9_]*):(?P<partition>\d+):(?P<offset>\d+)$")


class DeadLetterError(OnceonlyError):
    """A dead-letter request the operator can correct (a bad id, a letter that does not exist or cannot be used)."""


class BadDeadLetterId(DeadLetterError):
    """The id is not ``<source>:<partition>:<offset>``."""


class UnknownDeadLetter(DeadLetterError):
    """No dead letter has this id."""


@dataclass(frozen=True, order=True)
class DeadLetterId:
    source: str
    partition: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> DeadLetterId:
        found = _ID.match(text.strip())
        if found is None:
            raise BadDeadLetterId(
                f"{text!r} is not a dead-letter id",
                hint="ids look like housing_fund:0:12 (source:partition:offset); see: onceonly dlq list",
            )
        source = check_source(found["source"])
        return cls(source, int(found["partition"]), int(found["offset"]))

    def __str__(self) -> str:
        return f"{self.source}:{self.partition}:{self.offset}"


def check_source(source: str) -> str:
    """``distributor`` or a department code of the registry; anything else is one clear error naming the known ones."""
    if source != DISTRIBUTOR:
        load_departments().get(source)
    return source


def all_sources() -> list[str]:
    """Every dead-letter source: each department (as a holder), then the distributor."""
    return [*load_departments().codes(), DISTRIBUTOR]


def dlq_topic(settings: Settings, source: str) -> str:
    return settings.topic(f"dlq.{source}")


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass
class DeadLetter:
    """One record of a dead-letter topic: the original key, value and headers, plus where and why it failed."""

    id: DeadLetterId
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int

    @classmethod
    def of(cls, source: str, message: Message) -> DeadLetter:
        raw = message.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        headers = [(str(k), v.encode() if isinstance(v, str) else (v or b"")) for k, v in pairs]
        _, timestamp = message.timestamp()
        return cls(
            DeadLetterId(source, message.partition() or 0, message.offset() or 0),
            message.topic() or "",
            message.key(),
            message.value(),
            headers,
            max(int(timestamp), 0),
        )

    def header(self, name: str) -> str:
        """The last value of a header (a re-driven record may carry an older round's value first)."""
        found = ""
        for k, v in self.headers:
            if k == name:
                found = _text(v)
        return found

    @property
    def holder(self) -> str:
        """The holder concerned: the source for a holder's letter, the header (maybe empty) for the distributor's."""
        return self.id.source if self.id.source != DISTRIBUTOR else self.header("onceonly.holder")

    @property
    def reason(self) -> str:
        return self.header("__connect.errors.exception.message") or "(no reason given)"

    @property
    def error_class(self) -> str:
        return self.header("__connect.errors.exception.class.name")

    @property
    def stage(self) -> str:
        return self.header("__connect.errors.stage")

    @property
    def origin(self) -> tuple[str, int | None, int | None]:
        """Topic, partition and offset the failing record was read from."""
        return (
            self.header("__connect.errors.topic"),
            _int(self.header("__connect.errors.partition")),
            _int(self.header("__connect.errors.offset")),
        )

    @property
    def event_id(self) -> str:
        return self.header("onceonly.event_id")

    @property
    def schema_id(self) -> int | None:
        return _int(self.header("onceonly.schema_id"))

    @property
    def entity_key(self) -> str:
        return _text(self.key)

    @property
    def redrive_of(self) -> str:
        """The dead letter this one came back from, when a re-drive failed again."""
        return self.header(REDRIVE_OF)

    def summary(self) -> dict[str, Any]:
        """What ``dlq list`` and the HTTP API show (JSON-ready; the value itself only in ``show``)."""
        topic, partition, offset = self.origin
        return {
            "id": str(self.id),
            "source": self.id.source,
            "holder": self.holder,
            "entity_key": self.entity_key,
            "event_id": self.event_id,
            "stage": self.stage,
            "error_class": self.error_class,
            "reason": self.reason,
            "origin": {"topic": topic, "partition": partition, "offset": offset},
            "schema_id": self.schema_id,
            "redrive_of": self.redrive_of or None,
            "dead_lettered_at": _iso(self.timestamp_ms),
            "value_bytes": len(self.value or b""),
        }


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _iso(ms: int) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms > 0 else None


def read_dead_letters(settings: Settings, sources: list[str]) -> list[DeadLetter]:
    """Every record of these sources' dead-letter topics, source by source, in offset order per partition."""
    return DeadLetterFeed(settings, sources).new()


class DeadLetterFeed:
    """The dead-letter topics of some sources, followed: ``new()`` returns the letters written since the last call."""

    def __init__(self, settings: Settings, sources: list[str]) -> None:
        self.sources = sources
        self._by_topic = {dlq_topic(settings, s): s for s in sources}
        self._order = {s: i for i, s in enumerate(sources)}
        self._follower = Follower(settings, self._by_topic)

    def new(self) -> list[DeadLetter]:
        found = [DeadLetter.of(self._by_topic[m.topic() or ""], m) for m in self._follower.new()]
        found.sort(key=lambda d: (self._order[d.id.source], d.id.partition, d.id.offset))
        return found


def find_dead_letter(settings: Settings, letter_id: DeadLetterId) -> DeadLetter:
    """The dead letter with this id; ``UnknownDeadLetter`` when its topic has no such partition or offset."""
    topic = dlq_topic(settings, letter_id.source)
    consumer = reader(settings)
    try:
        partitions = partitions_of(consumer, topic)
    finally:
        consumer.close()
    if letter_id.partition not in partitions:
        raise UnknownDeadLetter(
            f"no dead letter {letter_id}: {topic} has partitions {', '.join(map(str, partitions))}",
            hint="see: onceonly dlq list",
        )
    tp = (topic, letter_id.partition)
    end = end_offsets(settings, [topic]).get(tp, 0)
    if letter_id.offset >= end:  # never seek past the end: the embedded broker then sends nothing, not even EOF
        raise UnknownDeadLetter(
            f"no dead letter {letter_id}: {topic} partition {letter_id.partition} "
            f"has no record at offset {letter_id.offset} (it ends at {end})",
            hint="see: onceonly dlq list",
        )
    for message in read_to_end(settings, {tp: letter_id.offset}, stops={tp: letter_id.offset + 1}):
        if message.offset() == letter_id.offset:
            return DeadLetter.of(letter_id.source, message)
    raise UnknownDeadLetter(
        f"no dead letter {letter_id}: {topic} partition {letter_id.partition} "
        f"has no record at offset {letter_id.offset}",
        hint="see: onceonly dlq list",
    )
