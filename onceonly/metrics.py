"""The platform's Prometheus metrics, defined once so every service reports under the same names."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PUBLISHED = Counter(
    "onceonly_changes_published", "Change events acknowledged by the broker", ["authority", "entity_type"]
)
PUBLISH_REJECTED = Counter(
    "onceonly_changes_rejected",
    "Changes refused before publishing (invalid record, not the authority)",
    ["source", "reason"],
)
DELIVERED = Counter(
    "onceonly_changes_delivered", "Projected changes written to a holder's inbox", ["holder", "entity_type"]
)
WITHHELD = Counter(
    "onceonly_changes_withheld",
    "Changes not delivered to a holder and why (no agreement, expired, restricted)",
    ["holder", "reason"],
)
APPLIED = Counter(
    "onceonly_changes_applied",
    "Outcomes at holders: applied, skipped_duplicate, skipped_stale, dead_lettered",
    ["holder", "outcome"],
)
DEAD_LETTERS = Counter("onceonly_dead_letters", "Records sent to a dead-letter topic", ["service", "holder"])
PROPAGATION = Histogram(
    "onceonly_propagation_seconds",
    "Time from recorded_at at the authority to applied at the holder",
    ["holder"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
LAG = Gauge("onceonly_consumer_lag", "Changes not yet processed", ["group", "topic"])
REBALANCES = Counter("onceonly_consumer_rebalances", "Consumer group rebalances seen", ["service"])
SOURCE_HEARTBEAT = Gauge(
    "onceonly_source_heartbeat_timestamp_seconds", "Last time a source connector proved it was alive", ["source"]
)
SOURCE_RETRIES = Counter("onceonly_source_retries", "Broker or database retries by a source", ["source"])
