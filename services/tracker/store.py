"""Per-change propagation status in Redis, folded from receipts.

Two keys per fact, both under the deployment's prefix:

- ``<prefix>receipt:<event_id>``: a hash, holder -> the holder's outcome as JSON. Receipts arrive at least once
  and in any order, so the fold keeps the most conclusive outcome per holder (applied > skipped_duplicate >
  skipped_stale > dead_lettered; among equals, the first): a redelivered change does not turn "applied" into
  "skipped_duplicate", and a dead letter that was re-driven and applied shows as applied. A receipt repeating an
  apply (``already_applied_at``, see ``services.subscriber.receipts``) folds as applied at that time, so an
  "applied" receipt lost in a subscriber crash is made good; a second "applied" keeps the first.
- ``<prefix>trace:<entity_type>:<entity_key>``: a sorted set of every receipt about one entity, by time, for
  ``trace``. The same receipt folded twice is one member, so a replay of the receipts topic does not double it.

And one for the tracker itself: ``<prefix>tracker:positions``, a hash ``<topic>:<partition>`` -> the next offset to
fold, written in the same transaction as the receipts it covers (as a sink keeps its watermark with its data).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypedDict

import redis

from services.subscriber.receipts import counted_as

DEFAULT_TTL_SECONDS = 30 * 24 * 3600  # the receipts topic's retention

_FOLD = """
local rank = {dead_lettered = 1, skipped_stale = 2, skipped_duplicate = 3, applied = 4}
if KEYS[1] ~= '' then
  local new = cjson.decode(ARGV[2])
  local current = redis.call('HGET', KEYS[1], ARGV[1])
  if (not current) or rank[new.outcome] > rank[cjson.decode(current).outcome] then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  end
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
if KEYS[2] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
return 1
"""


class HolderStatus(TypedDict):
    """Where one change stands at one holder."""

    outcome: str
    at: int
    reason: str | None
    entity_type: str
    entity_key: str
    authority_version: int | None
    recorded_at: int | None


class TraceEntry(TypedDict):
    event_id: str
    holder: str
    outcome: str
    at: int
    authority_version: int | None
    reason: str | None


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


class ReceiptStore:
    """Reads and writes the status keys; the tracker writes, operators read."""

    def __init__(self, client: redis.Redis, prefix: str = "", ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self._fold = client.register_script(_FOLD)

    @classmethod
    def from_url(cls, url: str, prefix: str = "", **kwargs: Any) -> ReceiptStore:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, decode_responses=True)
        return cls(client, prefix, **kwargs)

    def _status_key(self, event_id: str) -> str:
        return f"{self.prefix}receipt:{event_id}"

    def _trace_key(self, entity_type: str, entity_key: str) -> str:
        return f"{self.prefix}trace:{entity_type}:{entity_key}"

    def _positions_key(self) -> str:
        return f"{self.prefix}tracker:positions"

    def positions(self, topic: str) -> dict[int, int]:
        """Partition -> the next offset of ``topic`` to fold, as Redis holds it (absent: nothing folded here)."""
        raw: dict[str, str] = self.client.hgetall(self._positions_key())  # type: ignore[assignment]
        found: dict[int, int] = {}
        for field, value in raw.items():
            name, _, partition = field.rpartition(":")
            if name == topic:
                found[int(partition)] = int(value)
        return found

    def fold(
        self, receipts: Iterable[Mapping[str, Any]], positions: Mapping[tuple[str, int], int] | None = None
    ) -> int:
        """Fold decoded receipt records into Redis in one transaction, with the read ``positions`` (topic,
        partition -> next offset) they bring the fold to; returns how many were folded."""
        pipe = self.client.pipeline(transaction=True)
        n = 0
        for r in receipts:
            at = _ms(r["applied_at"]) or 0
            outcome, reached = counted_as(r)
            status: dict[str, Any] = {
                "outcome": outcome,
                "at": _ms(reached) or 0,
                "reason": r.get("reason"),
                "entity_type": r.get("entity_type") or "",
                "entity_key": r.get("entity_key") or "",
                "authority_version": r.get("authority_version"),
                "recorded_at": _ms(r.get("recorded_at")),
            }
            entry = {"outcome": r["outcome"], "at": at, **{k: status[k] for k in ("authority_version", "reason")}}
            entry = {"event_id": r["event_id"], "holder": r["holder"], **entry}  # the trace: as it arrived
            status_key = self._status_key(r["event_id"]) if r["event_id"] else ""
            trace_key = self._trace_key(status["entity_type"], status["entity_key"]) if status["entity_key"] else ""
            if not status_key and not trace_key:
                continue
            self._fold(
                keys=[status_key, trace_key],
                args=[r["holder"], _dumps(status), at, _dumps(entry), self.ttl_seconds],
                client=pipe,
            )
            n += 1
        if positions:
            pipe.hset(self._positions_key(), mapping={f"{t}:{p}": o for (t, p), o in positions.items()})
        pipe.execute()
        return n

    def status(self, event_id: str) -> dict[str, HolderStatus]:
        """Holder -> where this change stands there; holders with no receipt yet are absent."""
        raw: dict[str, str] = self.client.hgetall(self._status_key(event_id))  # type: ignore[assignment]
        return {holder: json.loads(value) for holder, value in sorted(raw.items())}

    def trace(self, entity_type: str, entity_key: str) -> list[TraceEntry]:
        """Every receipt about one entity, oldest first."""
        members: list[str] = self.client.zrange(self._trace_key(entity_type, entity_key), 0, -1)  # type: ignore[assignment]
        return [json.loads(m) for m in members]


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
