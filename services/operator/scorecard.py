"""The service scorecard: per holder, did changes land, how fast, what is stuck, and how far behind is it now.

Counted per change, not per receipt: receipts arrive at least once, and a dead letter that was re-driven has two
(``dead_lettered``, then ``applied``). A change counts once as received; its propagation time is recorded_at (at the
authority) to its first ``applied`` receipt, so a change that sat in a dead-letter queue for a day shows that day.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from onceonly.catalog import load_departments
from onceonly.errors import OnceonlyError
from services.operator.receipt_log import ReceiptRow

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class BadDuration(OnceonlyError):
    """A duration option that is not a number with a unit."""


def parse_duration_ms(text: str, option: str) -> int:
    """``7d``, ``12h``, ``30m``, ``60s``, ``500ms`` or plain seconds, as milliseconds."""
    found = _DURATION.match(text)
    if found is None or float(found[1]) <= 0:
        raise BadDuration(f"{option} {text!r} is not a duration", hint="e.g. 7d, 12h, 30m, 60s, 500ms")
    return int(float(found[1]) * _UNIT_MS[found[2] or "s"])


def percentile(sorted_values: list[int], q: float) -> int | None:
    """Nearest-rank percentile of sorted values (None for none)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 1))  # ceil(n * q), at least 1
    return sorted_values[int(rank) - 1]


@dataclass
class HolderScore:
    holder: str
    name: str
    received: int = 0
    applied: int = 0
    within_target: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    p50_ms: int | None = None
    p99_ms: int | None = None
    max_ms: int | None = None
    dead_letters_open: int = 0
    lag: int | None = None
    lag_oldest_s: float | None = None
    last_applied_at: int | None = None

    @property
    def within_target_pct(self) -> float | None:
        """Of the changes the holder had to apply (received, minus those it already held), the share applied in time."""
        needed = self.received - self.skipped
        return round(100.0 * self.within_target / needed, 1) if needed else None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "within_target_pct": self.within_target_pct}


@dataclass
class Scorecard:
    since_ms: int
    until_ms: int
    target_ms: int
    holders: list[HolderScore]
    distributor_dead_letters_open: int = 0
    distributor_lag: int | None = None
    lag_source: str = ""
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "since_ms": self.since_ms,
            "until_ms": self.until_ms,
            "target_ms": self.target_ms,
            "holders": [h.as_json() for h in self.holders],
            "distributor_dead_letters_open": self.distributor_dead_letters_open,
            "distributor_lag": self.distributor_lag,
            "lag_source": self.lag_source,
            "notes": self.notes,
        }


@dataclass
class _Change:
    first_at: int
    applied_ms: int | None = None
    applied_at: int | None = None
    outcomes: set[str] = field(default_factory=set)


def score(
    rows: Iterable[ReceiptRow],
    *,
    since_ms: int,
    target_ms: int,
    dead_letters_open: Mapping[str, int],
    lag: Mapping[str, int | None],
    holders: list[str] | None = None,
    now_ms: int | None = None,
) -> Scorecard:
    """The scorecard of receipts that arrived since ``since_ms``, with the open dead letters and lag of now."""
    until = now_ms if now_ms is not None else int(time.time() * 1000)
    changes: dict[str, dict[str, _Change]] = {}
    for r in rows:
        if r.applied_at < since_ms or (holders is not None and r.holder not in holders):
            continue
        c = changes.setdefault(r.holder, {}).setdefault(r.change_key, _Change(r.applied_at))
        c.first_at = min(c.first_at, r.applied_at)
        c.outcomes.add(r.outcome)
        if r.outcome == "applied" and (c.applied_at is None or r.applied_at < c.applied_at):
            c.applied_at, c.applied_ms = r.applied_at, r.propagation_ms
    registry = load_departments()
    codes = registry.codes()
    if holders is None:
        active = set(changes) | {h for h, n in dead_letters_open.items() if n} | {h for h, n in lag.items() if n}
        holders = [c for c in codes if c in active] or codes
    out = [
        _holder_score(h, registry.get(h).name, changes.get(h, {}), target_ms, dead_letters_open, lag) for h in holders
    ]
    return Scorecard(since_ms, until, target_ms, out)


def _holder_score(
    holder: str,
    name: str,
    changes: dict[str, _Change],
    target_ms: int,
    dead_letters_open: Mapping[str, int],
    lag: Mapping[str, int | None],
) -> HolderScore:
    s = HolderScore(holder, name, dead_letters_open=dead_letters_open.get(holder, 0), lag=lag.get(holder))
    times: list[int] = []
    for c in changes.values():
        s.received += 1
        if c.applied_at is not None:
            s.applied += 1
            s.last_applied_at = max(s.last_applied_at or 0, c.applied_at)
            if c.applied_ms is not None:
                times.append(c.applied_ms)
                if c.applied_ms <= target_ms:
                    s.within_target += 1
        elif c.outcomes & {"skipped_duplicate", "skipped_stale"}:
            s.skipped += 1
        else:
            s.dead_lettered += 1
    times.sort()
    s.p50_ms, s.p99_ms = percentile(times, 0.5), percentile(times, 0.99)
    s.max_ms = times[-1] if times else None
    return s
