"""Is each source alive, quiet or dead? Read from ``source.heartbeats``, with the source's own dead letters.

A source sends a heartbeat at its first look and then every ``interval_s`` (``onceonly.publisher.heartbeat``),
busy or quiet, saying whether it published since the previous one. So, per source, from its newest heartbeat:

- ``alive``: it beat on time and published since its previous beat;
- ``quiet``: it beats on time and has nothing to publish: no changes at the department, the source is fine;
- ``dead``: no heartbeat for ``dead_after`` times its interval (or never one, for a configured source): the process
  is gone or stuck, and changes recorded meanwhile wait in its outbox or export.

With the source's configuration, its dead letters are read where the source keeps them (the outbox's dead-letter
table in the department's database; the snapshot state file), read-only.

The whole topic is read: it holds one small record per source per interval for its retention (7 days).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from onceonly.errors import OnceonlyError
from onceonly.publisher.heartbeat import HEARTBEATS_TOPIC, longest_gap
from onceonly.settings import Settings
from services.distributor.reading import read_to_end
from services.operator.follow import all_partitions

if TYPE_CHECKING:
    from connectors.sources.config import OutboxSourceConfig, SnapshotSourceConfig

State = Literal["alive", "quiet", "dead"]
DEFAULT_INTERVAL_S = 30.0  # a heartbeat that does not say its interval (written before it did)
REASONS_SHOWN = 3


class NoHeartbeats(OnceonlyError):
    """Nothing on the heartbeat topic and no configuration naming the sources to look for."""


@dataclass(frozen=True)
class Beat:
    """One heartbeat event as a source wrote it."""

    source: str
    kind: str
    department: str
    status: str
    ts_ms: int
    interval_s: float | None
    published_total: int
    rejected_total: int
    last_change_ms: int | None

    @classmethod
    def parse(cls, value: bytes | None) -> Beat | None:
        """The event, or None for a record that is not one (it is skipped, not fatal: this is a status view)."""
        try:
            e = json.loads(value or b"")
            interval = e.get("interval_s")
            return cls(
                source=str(e["source"]),
                kind=str(e.get("kind") or ""),
                department=str(e.get("department") or ""),
                status=str(e.get("status") or ""),
                ts_ms=int(e["ts_ms"]),
                interval_s=float(interval) if interval is not None else None,
                published_total=int(e.get("published_total") or 0),
                rejected_total=int(e.get("rejected_total") or 0),
                last_change_ms=int(e["last_change_ms"]) if e.get("last_change_ms") is not None else None,
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


@dataclass
class SourceStatus:
    """One source: its newest heartbeat and what it means, and (with its configuration) its dead letters."""

    name: str
    kind: str
    department: str
    state: State
    beat: Beat | None
    age_s: float | None
    interval_s: float
    dead_letters: int | None = None  # None: not known (no configuration, or nothing written yet)
    last_reasons: list[str] = field(default_factory=list)
    problem: str | None = None  # why the dead letters could not be read

    def to_json(self) -> dict[str, Any]:
        b = self.beat
        return {
            "source": self.name,
            "kind": self.kind,
            "department": self.department,
            "state": self.state,
            "last_heartbeat_ms": b.ts_ms if b else None,
            "age_s": self.age_s,
            "interval_s": self.interval_s,
            "published_total": b.published_total if b else None,
            "last_change_ms": b.last_change_ms if b else None,
            "dead_letters": self.dead_letters,
            "last_reasons": self.last_reasons,
            "problem": self.problem,
        }


def latest_beats(settings: Settings) -> dict[str, Beat]:
    """Source name -> its newest heartbeat (by its own time; a source's beats share a partition, keyed by name)."""
    newest: dict[str, Beat] = {}
    for message in read_to_end(settings, all_partitions(settings, [settings.topic(HEARTBEATS_TOPIC)])):
        beat = Beat.parse(message.value())
        if beat is not None and (beat.source not in newest or beat.ts_ms >= newest[beat.source].ts_ms):
            newest[beat.source] = beat
    return newest


def judge(
    beat: Beat | None, *, interval_s: float | None, dead_after: float, now_ms: int | None = None
) -> tuple[State, float | None, float]:
    """(state, age in seconds, expected interval) of one source from its newest heartbeat."""
    every = (beat.interval_s if beat and beat.interval_s else None) or interval_s or DEFAULT_INTERVAL_S
    if beat is None:
        return "dead", None, every
    age = max((now_ms if now_ms is not None else int(time.time() * 1000)) - beat.ts_ms, 0) / 1000
    if age > dead_after * every:
        return "dead", age, every
    return ("alive" if beat.status == "publishing" else "quiet"), age, every


def source_statuses(
    settings: Settings,
    configs: Sequence[OutboxSourceConfig | SnapshotSourceConfig] | None = None,
    *,
    only: str | None = None,
    dead_after: float = 3.0,
) -> list[SourceStatus]:
    """Every configured source (or, without ``configs``, every source seen on the topic), judged now."""
    beats = latest_beats(settings)
    if configs is None:
        if only is not None:
            beats = {k: v for k, v in beats.items() if k == only}
        if not beats:
            topic = settings.topic(HEARTBEATS_TOPIC)
            what = f"source {only!r} has not" if only else "no source has"
            raise NoHeartbeats(
                f"{what} sent a heartbeat to {topic}: nothing runs here, or it died before its first beat",
                hint="give the sources' config to see each one: onceonly source status onceonly.yaml",
            )
        return [_status(name, beat, None, settings, dead_after) for name, beat in sorted(beats.items())]
    return [_status(c.name, beats.get(c.name), c, settings, dead_after) for c in configs]


def _status(
    name: str,
    beat: Beat | None,
    config: OutboxSourceConfig | SnapshotSourceConfig | None,
    settings: Settings,
    dead_after: float,
) -> SourceStatus:
    interval = longest_gap(config.heartbeat_interval, config.poll_interval) if config is not None else None
    state, age, every = judge(beat, interval_s=interval, dead_after=dead_after)
    kind = beat.kind if beat else ("outbox" if config is not None and config.kind == "outbox" else "snapshot_diff")
    department = beat.department if beat else (config.department if config is not None else "")
    status = SourceStatus(name, kind, department, state, beat, age, every)
    if config is not None:
        _dead_letters(status, config, settings.state_dir)
    return status


def _dead_letters(status: SourceStatus, config: OutboxSourceConfig | SnapshotSourceConfig, state_dir: Path) -> None:
    """Fill in the source's dead letters; a store that cannot be read is said, not raised (this is a status)."""
    from connectors.sources.config import OutboxSourceConfig
    from connectors.sources.outbox_tables import read_dead_letters as outbox_dead_letters
    from connectors.sources.snapshot import state_path
    from connectors.sources.snapshot_state import read_dead_letters as snapshot_dead_letters

    try:
        if isinstance(config, OutboxSourceConfig):
            found = outbox_dead_letters(config.url, config.dead_letter_table, config.db_schema, REASONS_SHOWN)
            if found is not None:
                status.dead_letters = found[0]
                status.last_reasons = [_line(f"row {row} ({key})", fld, why) for row, key, fld, why, _ in found[1]]
            return
        letters = snapshot_dead_letters(state_path(config, state_dir))
        if letters is not None:
            status.dead_letters = len(letters)
            status.last_reasons = [_line(key, fld, why) for key, fld, why in reversed(letters[-REASONS_SHOWN:])]
    except (sa.exc.SQLAlchemyError, sqlite3.Error, OSError) as e:
        status.problem = f"dead letters not readable: {type(e).__name__}: {str(e).splitlines()[0]}"


def _line(what: str, field_name: str | None, reason: str) -> str:
    """One dead letter as an operator reads it: which record, which field, why."""
    return f"{what}: {field_name}: {reason}"[:200] if field_name else f"{what}: {reason}"[:200]


def dead(statuses: Iterable[SourceStatus]) -> list[SourceStatus]:
    return [s for s in statuses if s.state == "dead"]
