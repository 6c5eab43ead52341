"""Liveness of a source (outbox, snapshot, gateway), so an operator can tell "no changes" from "source dead".

The ``SOURCE_HEARTBEAT`` gauge moves every time the source finishes a look at its input; a heartbeat event goes to
``source.heartbeats`` when the source has published nothing for ``interval`` seconds (a busy source proves it is
alive with its changes).
"""

from __future__ import annotations

import json
import time

from onceonly.metrics import SOURCE_HEARTBEAT
from onceonly.publisher.prepare import now_ms
from onceonly.publisher.sync import Publisher


class Heartbeat:
    def __init__(self, publisher: Publisher, source: str, kind: str, department: str, interval: float) -> None:
        self.publisher = publisher
        self.source = source
        self.kind = kind
        self.department = department
        self.interval = interval
        self.topic = publisher.settings.topic("source.heartbeats")
        self.published = 0
        self.rejected = 0
        self._last_sign = time.monotonic()
        self._last_change_ms: int | None = None

    def alive(self, published: int = 0, rejected: int = 0) -> None:
        """The source looked at its input successfully; ``published`` changes went out."""
        SOURCE_HEARTBEAT.labels(self.source).set(time.time())
        self.published += published
        self.rejected += rejected
        if published:
            self._last_sign = time.monotonic()
            self._last_change_ms = now_ms()

    def due(self) -> bool:
        return time.monotonic() - self._last_sign >= self.interval

    def event(self) -> dict[str, object]:
        return {
            "source": self.source,
            "kind": self.kind,
            "department": self.department,
            "status": "idle",
            "ts_ms": now_ms(),
            "published_total": self.published,
            "rejected_total": self.rejected,
            "last_change_ms": self._last_change_ms,
        }

    def beat_if_quiet(self) -> bool:
        """Send a heartbeat event when nothing was published for ``interval``; True when one was sent."""
        if not self.due():
            return False
        value = json.dumps(self.event(), separators=(",", ":")).encode()
        self.publisher.send_raw(self.topic, self.source.encode(), value)
        self._last_sign = time.monotonic()
        return True
