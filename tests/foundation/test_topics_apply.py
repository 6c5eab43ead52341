"""`topics apply` creates exactly the catalog and reports what differs."""

from __future__ import annotations

from confluent_kafka.cimpl import NewTopic

from onceonly.catalog import load_catalog, load_departments
from onceonly.settings import Settings
from onceonly.topics import admin, apply_topics, existing_partitions


def test_dry_run_creates_nothing_then_apply_creates_all(settings: Settings) -> None:
    expected = {settings.topic(t.name): t.partitions for t in load_catalog().concrete(load_departments().codes())}
    dry = apply_topics(settings, dry_run=True)
    assert {a.name for a in dry.actions if a.action == "create"} == set(expected)
    have = existing_partitions(admin(settings))
    assert not set(expected) & set(have)

    apply_topics(settings)
    have = existing_partitions(admin(settings))
    assert {name: have[name] for name in expected} == expected

    again = apply_topics(settings)
    assert {a.action for a in again.actions} == {"exists"}


def test_partition_mismatch_is_reported_not_accepted(settings: Settings) -> None:
    name = settings.topic("change.person")
    client = admin(settings)  # keep the handle alive until the future resolves
    client.create_topics([NewTopic(name, 1, 1)])[name].result(10)
    report = apply_topics(settings)
    (mismatch,) = report.mismatches
    assert mismatch.name == name
    assert "has 1 partitions, the catalog says 3" in mismatch.detail


def test_catalog_has_change_topic_per_entity_and_platform_topics() -> None:
    catalog = load_catalog()
    names = {t.name for t in catalog.concrete(["tax"])}
    for entity in catalog.entity_types:
        assert catalog.change_topic(entity) in names
        assert f"state.{entity}" in names
    assert {"inbox.tax", "dlq.tax", "receipts", "audit.deliveries", "dlq.distributor"} <= names
    change = next(t for t in catalog.concrete([]) if t.name == "change.person")
    assert change.config["retention.ms"] == "-1" and change.key == "entity_key"
