"""The platform's Prometheus metrics, defined once so every service reports under the same names."""

from __future__ import annotations

from typing import Any

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
LAG = Gauge(
    "onceonly_consumer_lag", "Records not yet processed (committed) by the group, per topic", ["group", "topic"]
)
REBALANCES = Counter("onceonly_consumer_rebalances", "Consumer group rebalances seen", ["service"])
RECEIPTS_FOLDED = Counter("onceonly_receipts_folded", "Receipts the tracker folded into Redis", ["holder"])
HTTP_REQUESTS = Counter("onceonly_http_requests", "HTTP requests answered", ["service", "method", "route", "status"])
SOURCE_HEARTBEAT = Gauge(
    "onceonly_source_heartbeat_timestamp_seconds", "Last time a source connector proved it was alive", ["source"]
)
SOURCE_RETRIES = Counter("onceonly_source_retries", "Broker or database retries by a source", ["source"])


class CountRequests:
    """ASGI middleware counting requests by route template (not path: ids in paths would make endless series)."""

    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets when the app raises before answering

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "(unmatched)")
            HTTP_REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()
