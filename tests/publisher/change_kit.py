"""Helpers shared by the publishing-side tests: valid ID numbers, person changes, reading a topic back."""

from __future__ import annotations

import time
import uuid
from datetime import date, timedelta
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from onceonly.kafka import confluent_config
from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde
from onceonly.standard.identity import id18_check_char

GOOD_ID = "11010519491231002X"


def person_id(n: int) -> str:
    """The n-th valid 18-character ID number of people born in Chaoyang from 1960 on (distinct for n < 10**6)."""
    born = date(1960, 1, 1) + timedelta(days=n // 1000)
    first17 = f"110105{born:%Y%m%d}{n % 1000:03d}"
    return first17 + id18_check_char(first17)


def person(key: str, **fields: Any) -> dict[str, Any]:
    born = f"{key[6:10]}-{key[10:12]}-{key[12:14]}"
    return {"id_number": key, "name": "王芳", "sex": "2", "birth_date": born, "district_code": "110105", **fields}


def person_change(key: str = GOOD_ID, version: int = 1, **after: Any) -> dict[str, Any]:
    """A change as an adapter writes it (JSON-ish values: the publisher converts them)."""
    return {
        "entity_type": "person",
        "entity_key": key,
        "authority_version": version,
        "op": "u" if version > 1 else "c",
        "event_type": "moved_in" if version > 1 else "created",
        "after": person(key, address=f"朝阳区建国路{version}号", **after),
    }


def read_topic(settings: Settings, name: str, *, expect: int = 0, timeout: float = 30.0) -> list[Any]:
    """Every record of catalog topic ``name`` (prefix applied), decoded: (key, record, headers) per message.

    Reads until ``expect`` records arrived and then one quiet second (more would be a duplicate), or ``timeout``.
    """
    topic = settings.topic(name)
    consumer = Consumer(
        confluent_config(settings, **{"group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False})
    )
    serde = Serde(RegistryClient(settings.registry_url))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                if len(out) >= expect and time.monotonic() - quiet_since > 1.0:
                    break
                continue
            quiet_since = time.monotonic()
            value = message.value()
            record = serde.decode(value).record if name.startswith("change.") else value
            out.append((message.key().decode(), record, dict(message.headers() or [])))
        return out
    finally:
        consumer.close()
