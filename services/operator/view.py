"""One view of the pipeline for operators: receipts, dead letters and their status, lag; shared by CLI and service.

The CLI makes a view, refreshes it once and prints; the operator service keeps one and refreshes it at most every
``min_interval`` seconds, each time reading only what arrived since (``Follower``), so polling stays cheap as the
topics grow. Everything it shows is derived from Kafka: restarting the service loses nothing.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onceonly.catalog import load_departments
from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde
from services.operator.action_ledger import ActionLedger
from services.operator.dead_letters import DISTRIBUTOR, all_sources
from services.operator.dlq_view import DeadLetterBook
from services.operator.lag_report import DISTRIBUTOR_ROW, measure
from services.operator.receipt_log import ReceiptLog, ReceiptRow
from services.operator.scorecard import Scorecard, percentile, score

if TYPE_CHECKING:
    from services.subscriber.config import SubscribersConfig

RECENT_SCAN = 20_000
LAG_SOURCE = "services.operator.lag_report: inbox end (fetch high watermark) minus the subscriber group's commit"


@dataclass
class LagNow:
    """Per holder, inbox records its subscriber group has not committed yet and the age of the oldest; the
    distributor's backlog on the change topics the same way (``lag_report.measure``, shared with ``onceonly lag``)."""

    waiting: dict[str, int] = field(default_factory=dict)
    oldest_age_s: dict[str, float | None] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    distributor: int | None = None


def current_lag(settings: Settings, subscribers: SubscribersConfig | None = None) -> LagNow:
    now = LagNow()
    for lag in measure(settings, subscribers=subscribers):
        if lag.name == DISTRIBUTOR_ROW:
            now.distributor = lag.waiting
        else:
            now.waiting[lag.name], now.oldest_age_s[lag.name] = lag.waiting, lag.oldest_age_s
            now.groups[lag.name] = lag.group
    return now


class OperatorView:
    """Receipts, dead letters (open and closed) and lag of one deployment, refreshed incrementally."""

    def __init__(
        self,
        settings: Settings,
        serde: Serde | None = None,
        *,
        min_interval: float = 0.0,
        subscribers: SubscribersConfig | None = None,
    ) -> None:
        self.settings = settings
        self.subscribers = subscribers  # their groups and topics, for lag (default: subscriber.<holder> on the inbox)
        self.serde = serde or Serde(RegistryClient(settings.registry_url))
        self.min_interval = min_interval
        self.departments = load_departments()
        self.sources = all_sources()
        self.ledger = ActionLedger(settings, self.serde)
        self.receipts = ReceiptLog(settings, self.serde)
        self.book = DeadLetterBook(settings, self.sources, self.ledger)
        self.lag = LagNow()
        self.refreshed_at = 0.0
        self._lock = threading.Lock()

    def refresh(self, *, force: bool = False) -> OperatorView:
        """Read what arrived since the last refresh (skipped when the last one is younger than ``min_interval``)."""
        with self._lock:
            if not force and time.monotonic() - self.refreshed_at < self.min_interval and self.refreshed_at:
                return self
            self.receipts.refresh()
            self.book.refresh()
            self.lag = current_lag(self.settings, self.subscribers)
            self.refreshed_at = time.monotonic()
        return self

    def scorecard(self, *, since_ms: int, target_ms: int, holders: list[str] | None = None) -> Scorecard:
        opened = self.book.open_counts()
        card = score(
            self.receipts.snapshot(),
            since_ms=since_ms,
            target_ms=target_ms,
            dead_letters_open={h: n for h, n in opened.items() if h != DISTRIBUTOR},
            lag=self.lag.waiting,
            holders=holders,
        )
        for h in card.holders:
            h.lag_oldest_s = self.lag.oldest_age_s.get(h.holder)
        card.distributor_dead_letters_open = opened.get(DISTRIBUTOR, 0)
        card.distributor_lag = self.lag.distributor
        card.lag_source = LAG_SOURCE
        if self.receipts.undecodable:
            card.notes.append(f"{self.receipts.undecodable} receipts did not decode and are not counted")
        return card

    def live(self, *, recent: int = 8, window_ms: int = 3_600_000, target_ms: int = 60_000) -> dict[str, Any]:
        """What the live page shows: per holder, the last hour's counts, lag, open dead letters and latest changes."""
        now = int(time.time() * 1000)
        card = self.scorecard(since_ms=now - window_ms, target_ms=target_ms)
        latest: dict[str, list[ReceiptRow]] = defaultdict(list)
        for row in reversed(self.receipts.snapshot()[-RECENT_SCAN:]):  # the newest receipts are enough
            if len(latest[row.holder]) < recent:
                latest[row.holder].append(row)
        open_letters = self.book.statuses()
        holders = []
        for h in card.holders:
            times = sorted(
                r.propagation_ms for r in latest[h.holder] if r.outcome == "applied" and r.propagation_ms is not None
            )
            holders.append(
                {
                    **h.as_json(),
                    "recent_p50_ms": percentile(times, 0.5),
                    "recent": [
                        {
                            "event_id": r.event_id,
                            "entity_type": r.entity_type,
                            "entity_key": r.entity_key,
                            "outcome": r.outcome,
                            "propagation_ms": r.propagation_ms,
                            "at": r.applied_at,
                            "reason": r.reason,
                        }
                        for r in latest[h.holder]
                    ],
                    "open_dead_letters": [s.letter.summary() for s in open_letters if s.letter.id.source == h.holder][
                        :recent
                    ],
                }
            )
        return {
            "generated_at": now,
            "window_ms": window_ms,
            "target_ms": target_ms,
            "holders": holders,
            "distributor_dead_letters_open": card.distributor_dead_letters_open,
            "distributor_lag": card.distributor_lag,
            "distributor_dead_letters": [s.letter.summary() for s in open_letters if s.letter.id.source == DISTRIBUTOR][
                :recent
            ],
        }
