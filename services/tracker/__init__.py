"""The tracker: receipts into Redis, so "where did this change land?" is a lookup.

    from services.tracker import status, trace
    status("5f0c...")      # {"housing_fund": {"outcome": "applied", "at": 1732456789123, ...}, "tax": {...}}
    trace("person", "110101198001010014")   # every receipt about that person, oldest first

Run it with ``python -m services.tracker``.
"""

from __future__ import annotations

from onceonly.errors import ConfigError
from onceonly.settings import Settings, load_settings
from services.tracker.store import HolderStatus, ReceiptStore, TraceEntry
from services.tracker.worker import Tracker

__all__ = ["HolderStatus", "ReceiptStore", "TraceEntry", "Tracker", "receipt_store", "status", "trace"]


def receipt_store(settings: Settings | None = None) -> ReceiptStore:
    """The status store of this deployment (Redis at ``settings.redis_url``, keys under its prefix)."""
    s = settings or load_settings()
    if not s.redis_url:
        raise ConfigError("no Redis configured", hint="set ONCEONLY_REDIS_URL or start the stack")
    return ReceiptStore.from_url(s.redis_url, s.topic_prefix)


def status(event_id: str, settings: Settings | None = None) -> dict[str, HolderStatus]:
    """Holder -> outcome, time and reason for one change; holders that sent no receipt yet are absent."""
    return receipt_store(settings).status(event_id)


def trace(entity_type: str, entity_key: str, settings: Settings | None = None) -> list[TraceEntry]:
    """Every receipt about one entity, oldest first."""
    return receipt_store(settings).trace(entity_type, entity_key)
