"""Receipts: one record per outcome at a holder, on topic ``receipts``, keyed by event id.

A ``skipped_duplicate`` with ``already_applied_at`` answers a redelivery of a change the holder had applied: its
first receipt may have been lost in a crash between the store's commit and the receipt, so this one repeats the
fact. Readers count it with ``counted_as``; its outcome stays what this delivery did, so counting 'applied'
receipts still counts real applies.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from connectors.sinks import Change, Outcome
from onceonly.standard import platform_schema

RECEIPTS_TOPIC = "receipts"


@lru_cache(maxsize=1)
def receipt_schema() -> dict[str, Any]:
    """``schemas/avro/receipt.avsc``, one object for the process (the serde caches by schema object)."""
    return platform_schema("receipt.avsc")


def now_ms() -> int:
    return int(time.time() * 1000)


def receipt(
    holder: str,
    outcome: Outcome,
    change: Change | None,
    *,
    reason: str | None = None,
    key: bytes | None = None,
    event_id: str | None = None,
    at: int | None = None,
) -> dict[str, Any]:
    """The receipt record; for a record that is not a usable change, its event id (if any) and Kafka key.
    ``already_applied_at`` is None: the caller sets it for a repeat of an apply."""
    return {
        "event_id": change.event_id if change else (event_id or ""),
        "holder": holder,
        "outcome": outcome,
        "entity_type": change.entity_type if change else "",
        "entity_key": change.entity_key if change else (key or b"").decode("utf-8", "replace"),
        "authority_version": change.authority_version if change else None,
        "reason": reason[:1000] if reason else None,
        "recorded_at": change.recorded_at if change and change.recorded_at else None,
        "applied_at": at if at is not None else now_ms(),
        "already_applied_at": None,
    }


def counted_as(record: Mapping[str, Any]) -> tuple[str, Any]:
    """(outcome, time) a decoded receipt stands for: a repeat of an apply counts as applied, when it was applied."""
    earlier = record.get("already_applied_at")
    if earlier is not None:
        return "applied", earlier
    return str(record["outcome"]), record["applied_at"]
