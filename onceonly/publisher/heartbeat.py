"""Liveness of a source (outbox, snapshot, gateway), so an operator can tell "no changes" from "source dead".

The ``SOURCE_HEARTBEAT`` gauge moves every time the source finishes a look at its input. A heartbeat event goes to
``source.heartbeats`` at the first look and then every ``interval`` seconds, busy or quiet: its ``status`` says
whether the source published since the previous one (``publishing``) or not (``idle``), and ``interval_s`` how
long a live source may go between two, so ``onceonly source status`` can tell a quiet source from a dead one
without knowing its configuration. (Beating only when quiet left a busy source looking dead.)
"""

from __future__ import annotations

import json
import time

from onceonly.metrics import SOURCE_HEARTBEAT
from onceonly.publisher.prepare import now_ms
from onceonly.publisher.sync import Publisher

HEARTBEATS_TOPIC = "source.heartbeats"


def longest_gap(interval: float, looks_every: float = 0.0) -> float:
    """The longest a live source leaves between two heartbeats: it beats at a look, once ``interval`` has passed."""
    return max(interval, looks_every)


class Heartbeat:
    """``looks_every``: how often the owner calls ``beat_if_due`` at most (a source's poll interval), so the
    announced ``interval_s`` is the longest gap a live source leaves between two beats."""

    def __init__(
        self,
        publisher: Publisher,
        source: str,
        kind: str,
        department: str,
        interval: float,
        *,
        looks_every: float = 0.0,
    ) -> None:
        self.publisher = publisher
        self.source = source
        self.kind = kind
        self.department = department
        self.interval = interval
        self.expected_every = longest_gap(interval, looks_every)
        self.topic = publisher.settings.topic(HEARTBEATS_TOPIC)
        self.published = 0
        self.rejected = 0
        self._last_beat: float | None = None
        self._published_at_beat = 0
        self._last_change_ms: int | None = None

    def alive(self, published: int = 0, rejected: int = 0) -> None:
        """The source looked at its input successfully; ``published`` changes went out."""
        SOURCE_HEARTBEAT.labels(self.source).set(time.time())
        self.published += published
        self.rejected += rejected
        if published:
            self._last_change_ms = now_ms()

    def due(self) -> bool:
        return self._last_beat is None or time.monotonic() - self._last_beat >= self.interval

    def event(self) -> dict[str, object]:
        return {
            "source": self.source,
            "kind": self.kind,
            "department": self.department,
            "status": "publishing" if self.published > self._published_at_beat else "idle",
            "ts_ms": now_ms(),
            "interval_s": self.expected_every,
            "published_total": self.published,
            "rejected_total": self.rejected,
            "last_change_ms": self._last_change_ms,
        }

    def beat_if_due(self) -> bool:
        """Send a heartbeat event at the first look and then every ``interval``; True when one was sent."""
        if not self.due():
            return False
        value = json.dumps(self.event(), separators=(",", ":")).encode()
        self.publisher.send_raw(self.topic, self.source.encode(), value)
        self._last_beat = time.monotonic()
        self._published_at_beat = self.published
        return True
