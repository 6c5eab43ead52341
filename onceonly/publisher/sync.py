"""``Publisher``: the SDK a department's adapter calls; it returns only once the broker has the change."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from onceonly.kafka import confluent_producer_config
from onceonly.metrics import PUBLISH_REJECTED, PUBLISHED
from onceonly.publisher.delivery import Ack, Delivery
from onceonly.publisher.errors import BatchFailed, PublishFailed
from onceonly.publisher.prepare import Prepared, Preparer
from onceonly.settings import Settings, load_settings
from onceonly.standard import RecordInvalid, RegistryClient, Serde

Change = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PublishResult:
    """An acknowledged change: its event id and where it lives."""

    event_id: str
    topic: str
    partition: int
    offset: int
    entity_key: str
    authority_version: int


class Publisher:
    """Validate, encode and send changes with an idempotent producer (``acks=all``).

        with Publisher() as publisher:
            publisher.publish({"entity_type": "person", "entity_key": "11010519491231002X",
                               "authority_version": 7, "op": "u", "event_type": "moved_in", "after": {...}})

    ``authority`` defaults to the entity type's authority (departments.yaml), ``event_id`` to uuid5 of
    (authority, entity type, key, version), ``recorded_at`` and ``ts_ms`` to now. One instance is thread-safe.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        serde: Serde | None = None,
        connector: str = "sdk",
        delivery_timeout: float = 30.0,
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.serde = serde or Serde(RegistryClient(self.settings.registry_url))
        self.connector = connector
        self.preparer = Preparer(self.settings, self.serde, connector=connector)
        self.delivery_timeout = delivery_timeout
        conf = confluent_producer_config(
            self.settings, **{"message.timeout.ms": int(delivery_timeout * 1000), **(producer_config or {})}
        )
        self._delivery = Delivery(conf)

    # -- validation ---------------------------------------------------------------------------------
    def prepare(self, change: Change, *, source: Mapping[str, Any] | None = None) -> Prepared:
        """Validate and encode without sending; ``RecordInvalid`` names the field. ``source`` fills the source block."""
        try:
            return self.preparer.prepare(change, source=source)
        except RecordInvalid:
            PUBLISH_REJECTED.labels(self.connector, "invalid").inc()
            raise

    # -- sending --------------------------------------------------------------------------------------
    def publish(self, change: Change) -> PublishResult:
        """Send one change and wait for the broker's acknowledgement."""
        outcome = self.send([self.prepare(change)])[0]
        if isinstance(outcome, PublishFailed):
            raise outcome
        return outcome

    def publish_many(self, changes: Iterable[Change]) -> list[PublishResult]:
        """Send a batch and wait for all acknowledgements together.

        Every change is validated first: one invalid change raises ``RecordInvalid`` (field ``[i].name``) and
        nothing is sent. When some are not acknowledged, ``BatchFailed.results`` says which were.
        """
        prepared = []
        for i, change in enumerate(changes):
            try:
                prepared.append(self.prepare(change))
            except RecordInvalid as e:
                raise RecordInvalid(f"[{i}].{e.field}" if e.field else f"[{i}]", e.reason) from e
        outcomes = self.send(prepared)
        failures = [o for o in outcomes if isinstance(o, PublishFailed)]
        if failures:
            raise BatchFailed(list(outcomes), failures)
        return [o for o in outcomes if isinstance(o, PublishResult)]

    def submit(self, prepared: Prepared) -> Future[Ack]:
        """Queue one prepared change without waiting (``AsyncPublisher`` and batches build on this)."""
        return self._delivery.send(prepared.topic, prepared.key, prepared.value, prepared.headers)

    def send(self, prepared: Sequence[Prepared]) -> list[PublishResult | PublishFailed]:
        """Send prepared changes; one outcome per change, in order (for sources that mark rows one by one)."""
        acks = self._delivery.send_many(
            [(p.topic, p.key, p.value, p.headers) for p in prepared], self.delivery_timeout + 15.0
        )
        outcomes: list[PublishResult | PublishFailed] = []
        published: Counter[tuple[str, str]] = Counter()
        for p, ack in zip(prepared, acks, strict=True):
            if isinstance(ack, Ack):
                published[(p.authority, p.entity_type)] += 1
                outcomes.append(
                    PublishResult(p.event_id, ack.topic, ack.partition, ack.offset, p.entity_key, p.authority_version)
                )
            elif ack is None:
                why = f"no delivery report within {self.delivery_timeout + 15:.0f}s"
                outcomes.append(PublishFailed(why, event_id=p.event_id))
            else:
                why = f"{ack}; last broker error: {self.last_error}" if self.last_error else str(ack)
                outcomes.append(PublishFailed(why, retriable=ack.retriable, event_id=p.event_id))
        for (authority, entity_type), n in published.items():
            PUBLISHED.labels(authority, entity_type).inc(n)
        return outcomes

    def settle(self, prepared: Prepared, future: Future[Ack]) -> PublishResult | PublishFailed:
        """Wait for one delivery report; librdkafka sends one within ``message.timeout.ms`` (plus a margin)."""
        try:
            ack = future.result(timeout=self.delivery_timeout + 15.0)
        except FutureTimeout:
            return PublishFailed(
                f"no delivery report within {self.delivery_timeout + 15:.0f}s", event_id=prepared.event_id
            )
        except PublishFailed as e:
            why = f"{e}; last broker error: {self.last_error}" if self.last_error else str(e)
            return PublishFailed(why, retriable=e.retriable, event_id=prepared.event_id)
        PUBLISHED.labels(prepared.authority, prepared.entity_type).inc()
        return PublishResult(
            prepared.event_id, ack.topic, ack.partition, ack.offset, prepared.entity_key, prepared.authority_version
        )

    def send_raw(self, topic: str, key: bytes | None, value: bytes) -> Ack:
        """Send a record that is not a change (heartbeats) and wait for it."""
        try:
            return self._delivery.send(topic, key, value).result(timeout=self.delivery_timeout + 15.0)
        except FutureTimeout:
            raise PublishFailed(f"no delivery report for {topic} within {self.delivery_timeout + 15:.0f}s") from None

    @property
    def last_error(self) -> str | None:
        """The producer's latest complaint about the cluster (e.g. all brokers down), for reports."""
        return self._delivery.last_error

    # -- lifecycle ------------------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        self._delivery.close(timeout)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
