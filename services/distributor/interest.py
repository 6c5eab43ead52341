"""Per-entity interest (the Dutch BRP "afnemersindicatie") for holders: register, end, list.

    from services.distributor import InterestClient
    with InterestClient(settings) as client:
        client.register("housing_fund", "person", "11010519491231002X", reason="account 88120")

A registration is a record on the ``interest`` topic; the distributor answers it with a fill message (the current
granted state) in the holder's inbox, then sends the entity's changes until the interest ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from confluent_kafka import KafkaError, Message, Producer

from onceonly.catalog import load_departments
from onceonly.errors import BrokerUnavailable, ConfigError
from onceonly.kafka import confluent_producer_config
from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde, SerdeError, entity_types, platform_schema, subject_for
from services.distributor.reading import read_to_end, whole_topics
from services.distributor.state import InterestSet, interest_key

Action = Literal["register", "end"]


class InterestClient:
    """Publishes interest registrations; each call returns once the broker acknowledged it."""

    def __init__(self, settings: Settings, serde: Serde | None = None, *, timeout: float = 15.0) -> None:
        self.settings = settings
        self.serde = serde or Serde(RegistryClient(settings.registry_url))
        self.topic = settings.topic("interest")
        self.subject = subject_for(self.topic)
        self.schema = platform_schema("interest.avsc")
        self.timeout = timeout
        self._producer = Producer(confluent_producer_config(settings))

    def __enter__(self) -> InterestClient:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._producer.flush(self.timeout)

    def register(self, holder: str, entity_type: str, entity_key: str, *, reason: str | None = None) -> None:
        self._send(holder, entity_type, entity_key, "register", reason)

    def end(self, holder: str, entity_type: str, entity_key: str, *, reason: str | None = None) -> None:
        self._send(holder, entity_type, entity_key, "end", reason)

    def _send(self, holder: str, entity_type: str, entity_key: str, action: Action, reason: str | None) -> None:
        check_request(holder, entity_type, entity_key)
        record = {
            "holder": holder,
            "entity_type": entity_type,
            "entity_key": entity_key,
            "action": action,
            "origin": "holder",
            "reason": reason,
            "requested_at": datetime.now(UTC),
        }
        value = self.serde.encode(self.schema, self.subject, record)
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        self._producer.produce(
            self.topic, key=interest_key(holder, entity_type, entity_key), value=value, on_delivery=on_delivery
        )
        if self._producer.flush(self.timeout) > 0 or errors:
            why = errors[0] if errors else f"no acknowledgement within {self.timeout:.0f}s"
            raise BrokerUnavailable(f"the interest registration was not stored: {why}", hint="is the stack up?")


def check_request(holder: str, entity_type: str, entity_key: str) -> None:
    """One clear error for a request that names no department, no entity type or no key."""
    load_departments().get(holder)
    if entity_type not in entity_types():
        raise ConfigError(f"unknown entity type {entity_type!r}", hint=f"known: {', '.join(entity_types())}")
    if not entity_key.strip():
        raise ConfigError("the entity key is empty")


def current_interest(settings: Settings, serde: Serde | None = None) -> InterestSet:
    """Every registration in force, folded from the whole ``interest`` topic."""
    serde = serde or Serde(RegistryClient(settings.registry_url))
    interest = InterestSet()
    for record in interest_records(settings, serde):
        interest.apply(record)
    return interest


def interest_records(settings: Settings, serde: Serde) -> Iterator[dict[str, Any]]:
    topic = settings.topic("interest")
    for message in read_to_end(settings, whole_topics(settings, [topic])):
        try:
            yield dict(serde.decode(message.value()).record)
        except SerdeError:
            continue
