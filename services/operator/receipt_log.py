"""The receipts topic as rows the scorecard and the live page count: who reached which outcome for which change, when.

Receipts are the only place where "recorded at the authority" meets "reached at the holder", so propagation times
come from here, not from Redis (the tracker keeps the best outcome per change, not every arrival time, and it
expires). The log follows the topic, so the operator service reads each receipt once. A receipt repeating an
apply (``already_applied_at``) is a row "applied" at the time it was applied (``receipts.counted_as``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde, SerdeError
from services.operator.follow import Follower
from services.subscriber.receipts import RECEIPTS_TOPIC, counted_as

log = logging.getLogger(__name__)


def millis(value: Any) -> int | None:
    """Epoch milliseconds from what the decoder gives for a timestamp (a datetime, a number or None)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    holder: str
    event_id: str
    outcome: str
    entity_type: str
    entity_key: str
    recorded_at: int | None
    applied_at: int
    reason: str | None

    @property
    def propagation_ms(self) -> int | None:
        """Recorded at the authority -> this outcome at the holder."""
        return None if self.recorded_at is None else max(self.applied_at - self.recorded_at, 0)

    @property
    def change_key(self) -> str:
        """One change at one holder: its event id, or (undecodable record) its key and time."""
        return self.event_id or f"?{self.entity_key}@{self.applied_at}"


class ReceiptLog:
    """Every receipt so far; ``refresh()`` adds the ones published since the last call."""

    def __init__(self, settings: Settings, serde: Serde | None = None) -> None:
        self.serde = serde or Serde(RegistryClient(settings.registry_url))
        self.rows: list[ReceiptRow] = []
        self.undecodable = 0
        self._follower = Follower(settings, [settings.topic(RECEIPTS_TOPIC)])
        self._lock = threading.Lock()

    def refresh(self) -> ReceiptLog:
        new: list[ReceiptRow] = []
        for message in self._follower.new():
            try:
                r = self.serde.decode(message.value()).record
            except SerdeError as e:
                self.undecodable += 1
                log.warning(
                    "receipt %s[%s]@%s does not decode: %s", message.topic(), message.partition(), message.offset(), e
                )
                continue
            outcome, reached = counted_as(r)
            new.append(
                ReceiptRow(
                    holder=str(r["holder"]),
                    event_id=str(r["event_id"]),
                    outcome=outcome,
                    entity_type=str(r.get("entity_type") or ""),
                    entity_key=str(r.get("entity_key") or ""),
                    recorded_at=millis(r.get("recorded_at")),
                    applied_at=millis(reached) or 0,
                    reason=r.get("reason"),
                )
            )
        with self._lock:
            self.rows.extend(new)
        return self

    def snapshot(self) -> list[ReceiptRow]:
        with self._lock:
            return list(self.rows)
