"""The tracker's fold into a real Redis: most conclusive outcome per holder, idempotent history per entity."""

from __future__ import annotations

from typing import Any

import pytest

from onceonly.settings import Settings
from services.tracker import ReceiptStore, status, trace

pytestmark = pytest.mark.usefixtures("redis_keys")


def receipt(holder: str, outcome: str, at: int, event_id: str = "ev-1", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "holder": holder,
        "outcome": outcome,
        "entity_type": "person",
        "entity_key": "110101198001010014",
        "authority_version": 7,
        "reason": extra.get("reason"),
        "recorded_at": 1_000,
        "applied_at": at,
        "already_applied_at": extra.get("already_applied_at"),
    }


def test_status_keeps_the_most_conclusive_outcome_per_holder(settings: Settings) -> None:
    assert settings.redis_url
    store = ReceiptStore.from_url(settings.redis_url, settings.topic_prefix)
    store.fold(
        [
            receipt("housing_fund", "applied", 2_000),
            receipt("housing_fund", "skipped_duplicate", 3_000),  # redelivered after a crash
            receipt("tax", "dead_lettered", 2_100, reason="IntegrityError: NOT NULL"),
        ]
    )
    store.fold(
        [receipt("tax", "applied", 9_000), receipt("tax", "dead_lettered", 2_100, reason="IntegrityError: NOT NULL")]
    )
    got = status("ev-1", settings)
    assert {h: (s["outcome"], s["at"]) for h, s in got.items()} == {
        "housing_fund": ("applied", 2_000),
        "tax": ("applied", 9_000),
    }
    assert got["tax"]["entity_key"] == "110101198001010014"
    assert status("ev-unknown", settings) == {}


def test_trace_lists_every_receipt_about_an_entity_once(settings: Settings) -> None:
    assert settings.redis_url
    store = ReceiptStore.from_url(settings.redis_url, settings.topic_prefix)
    history = [receipt("tax", "dead_lettered", 2_000, reason="bad"), receipt("tax", "applied", 5_000)]
    store.fold(history)
    store.fold(history)  # the receipts topic replayed
    store.fold([receipt("housing_fund", "applied", 3_000, event_id="ev-2")])
    entries = trace("person", "110101198001010014", settings)
    assert [(e["holder"], e["outcome"], e["at"], e["event_id"]) for e in entries] == [
        ("tax", "dead_lettered", 2_000, "ev-1"),
        ("housing_fund", "applied", 3_000, "ev-2"),
        ("tax", "applied", 5_000, "ev-1"),
    ]


def test_an_undecodable_records_receipt_has_no_event_but_joins_the_entitys_trace(settings: Settings) -> None:
    assert settings.redis_url
    store = ReceiptStore.from_url(settings.redis_url, settings.topic_prefix)
    store.fold([receipt("tax", "dead_lettered", 1_500, event_id="", reason="SerdeError: bad magic byte")])
    assert store.client.keys(f"{settings.topic_prefix}receipt:*") == []
    assert [e["outcome"] for e in store.trace("person", "110101198001010014")] == ["dead_lettered"]


def test_a_repeat_of_an_apply_stands_in_for_a_lost_applied_receipt_and_two_applies_are_one(
    settings: Settings,
) -> None:
    """A subscriber crashed between its store's commit and the receipt: the redelivery's repeat says applied."""
    assert settings.redis_url
    store = ReceiptStore.from_url(settings.redis_url, settings.topic_prefix)
    lost = receipt("tax", "skipped_duplicate", 9_000, reason="event ev-1 already applied", already_applied_at=2_000)
    store.fold([receipt("tax", "dead_lettered", 1_000, reason="bad"), lost])
    assert {h: (s["outcome"], s["at"]) for h, s in status("ev-1", settings).items()} == {"tax": ("applied", 2_000)}
    # The first applied stays: the original receipt folded again, or a second repeat, changes nothing.
    store.fold(
        [receipt("tax", "applied", 2_050), receipt("tax", "skipped_duplicate", 12_000, already_applied_at=2_000)]
    )
    assert status("ev-1", settings)["tax"]["at"] == 2_000
    # The trace shows what arrived, as it arrived; a plain duplicate (another event, same version) is not a repeat.
    assert [e["outcome"] for e in trace("person", "110101198001010014", settings)] == [
        "dead_lettered",
        "applied",
        "skipped_duplicate",
        "skipped_duplicate",
    ]
    store.fold([receipt("hrss", "skipped_duplicate", 3_000, reason="version 7 already applied (event ev-0)")])
    assert status("ev-1", settings)["hrss"]["outcome"] == "skipped_duplicate"
