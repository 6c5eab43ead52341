"""A replay window in time or offsets, and the offsets where it starts and ends in each partition.

"From time T" means: in each partition, from the first record whose timestamp is at or after T (Kafka's
offsets-for-times). Apache Kafka answers that from its time index (``offsets_for_times``). The embedded broker's
answer cannot be trusted (DESIGN.md); measured here, it is right for a time inside the data but says offset 0 for a
time after the last record and for an empty partition, where Kafka says "none", so "replay the last 2 hours" of a
quiet topic would replay its whole history. With ``broker_quirks: tansu`` the partitions are therefore scanned: one
pass reads each record's timestamp (no value is decoded) to the fetch high watermark. That is the only place the
broker matters here, and it is behind the one quirk setting (``tests/operator``: the scan is checked against the
broker's answer, and fails loudly the day the broker gets it right).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from confluent_kafka import KafkaException, TopicPartition

from onceonly.errors import BrokerUnavailable
from onceonly.settings import Settings
from services.distributor.reading import read_to_end, reader
from services.operator.replay_errors import BadWindow

TP = tuple[str, int]
_DURATION = re.compile(r"(\d+)\s*(w|d|h|m|s)")
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """``2h``, ``90m``, ``1d12h``, ``30s``, ``1w``."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise BadWindow(f"{text!r} is not a duration", hint="use e.g. 2h, 90m, 1d12h, 30s")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise BadWindow(f"the duration {text!r} is empty")
    return timedelta(seconds=seconds)


def parse_time(text: str, option: str = "time") -> datetime:
    """ISO 8601 (``2025-06-01T14:30``, ``2025-06-01 14:30:00+08:00``, ``2025-06-01``); without an offset it is the
    machine's local time, as an operator reading a wall clock means it."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise BadWindow(f"{option} {text!r} is not a time", hint="use ISO 8601, e.g. 2025-06-01T14:30+08:00") from e
    return value.astimezone(UTC) if value.tzinfo else value.astimezone().astimezone(UTC)


@dataclass(frozen=True)
class Window:
    """What to replay: from a time or an offset (or the start), to a time (or the end as it is when planning)."""

    start: datetime | None = None
    end: datetime | None = None
    from_offset: int | None = None

    @classmethod
    def of(
        cls,
        *,
        start: str | None = None,
        by_duration: str | None = None,
        from_offset: int | None = None,
        end: str | None = None,
        now: datetime | None = None,
    ) -> Window:
        """Check the options an operator gave: one start at most, nothing in the future, the end after the start."""
        now = now or datetime.now(UTC)
        options = (("--from", start), ("--by-duration", by_duration), ("--from-offset", from_offset))
        given = [n for n, v in options if v is not None]
        if len(given) > 1:
            raise BadWindow(f"{' and '.join(given)} both say where to start: give one")
        begin = parse_time(start, "--from") if start else None
        if by_duration:
            begin = now - parse_duration(by_duration)
        if from_offset is not None and from_offset < 0:
            raise BadWindow(f"--from-offset {from_offset} is negative")
        finish = parse_time(end, "--to") if end else None
        for option, value in (("--from", begin if start else None), ("--to", finish)):
            if value is not None and value > now:
                raise BadWindow(
                    f"{option} {value.isoformat(timespec='seconds')} is in the future (now it is "
                    f"{now.isoformat(timespec='seconds')}): nothing can have been recorded then",
                    hint="leave --to out to replay up to now" if option == "--to" else None,
                )
        if begin is not None and finish is not None and finish <= begin:
            raise BadWindow(f"--to {finish.isoformat(timespec='seconds')} is not after the start {begin.isoformat()}")
        return cls(begin, finish, from_offset)

    def describe(self) -> str:
        start = (
            f"from {self.start.isoformat(timespec='seconds')}"
            if self.start
            else (f"from offset {self.from_offset}" if self.from_offset is not None else "from the beginning")
        )
        end = f"to {self.end.isoformat(timespec='seconds')}" if self.end else "to the end"
        return f"{start} {end}"


def millis(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def partitions(settings: Settings, topics: Iterable[str]) -> list[TP]:
    """Every partition of ``topics`` (a topic that does not exist is an error naming it)."""
    from services.distributor.reading import partitions_of

    consumer = reader(settings)
    try:
        return [(t, p) for t in topics for p in partitions_of(consumer, t)]
    finally:
        consumer.close()


def offsets_at_times(settings: Settings, tps: Sequence[TP], times_ms: Sequence[int]) -> list[dict[TP, int | None]]:
    """For each time, per partition: the first offset whose timestamp is at or after it (None: no such record)."""
    if settings.broker_quirks == "tansu":
        return _scanned(settings, tps, times_ms)
    consumer = reader(settings)
    try:
        out: list[dict[TP, int | None]] = []
        for ts in times_ms:
            try:
                found = consumer.offsets_for_times([TopicPartition(t, p, ts) for t, p in tps], timeout=15)
            except KafkaException as e:
                raise BrokerUnavailable(f"the Kafka cluster did not answer offsets-for-times: {e}") from e
            out.append({(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in found})
        return out
    finally:
        consumer.close()


def _scanned(settings: Settings, tps: Sequence[TP], times_ms: Sequence[int]) -> list[dict[TP, int | None]]:
    """offsets-for-times by reading every record's timestamp (the embedded broker's own answer is wrong)."""
    found: list[dict[TP, int | None]] = [dict.fromkeys(tps) for _ in times_ms]
    open_ = {tp: list(range(len(times_ms))) for tp in tps}  # which times a partition has not reached yet
    for message in read_to_end(settings, dict.fromkeys(tps, 0)):
        tp = (message.topic() or "", message.partition() or 0)
        waiting = open_.get(tp)
        if not waiting:
            continue
        ts = message.timestamp()[1]
        for i in list(waiting):
            if ts >= times_ms[i]:
                found[i][tp] = message.offset()
                waiting.remove(i)
    return found
