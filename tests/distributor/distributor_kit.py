"""Change events and agreements for distributor tests: valid identifiers, and secret values easy to search for."""

from __future__ import annotations

import datetime
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from onceonly.kafka import confluent_config, confluent_producer_config
from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde, change_schema, event_id
from onceonly.standard.identity import id18_check_char, upgrade_id15
from onceonly.testing import process_env
from services.distributor import Distributor
from services.distributor.reading import partitions_of, read_to_end, reader, whole_topics

RECORDED = 1_760_000_000_000
OLD_ID15 = "110105491231002"  # a 15-digit number from before the upgrade
NEW_ID18 = upgrade_id15(OLD_ID15)


def person_id(n: int, district: str = "110105") -> str:
    """A valid 18-digit ID number, unique per ``n``."""
    first17 = f"{district}1980{(n // 28) % 12 + 1:02d}{n % 28 + 1:02d}{n % 1000:03d}"
    return first17 + id18_check_char(first17)


def person(key: str, version: int = 1, *, district: str = "110105", **after: Any) -> dict[str, Any]:
    """A person change; fields no agreement in these tests grants carry values that must never reach an inbox."""
    entity = {
        "id_number": key,
        "name": f"Name-{key[-6:]}-v{version}",
        "sex": "2",
        "birth_date": datetime.date(1980, 1, 1),
        "ethnicity": f"ETHNICSECRET{key[-6:]}",
        "household_id": f"HH{key[-6:]}",
        "district_code": district,
        "address": f"Address {key[-6:]} v{version}",
        "residence_type": "registered",
        "residence_permit_no": f"PERMITSECRET{key[-6:]}",
        "status": "active",
        **after,
    }
    return envelope("person", key, version, "public_security", entity)


def enterprise(uscc: str, version: int = 1, *, district: str = "110105") -> dict[str, Any]:
    entity = {
        "uscc": uscc,
        "name": f"Enterprise {uscc[-4:]}",
        "legal_representative": "Li Lei",
        "legal_representative_id_number": person_id(999),
        "address": f"Road {uscc[-4:]}",
        "district_code": district,
        "status": "active",
        "registered_on": datetime.date(2020, 5, 1),
    }
    return envelope("enterprise", uscc, version, "market_regulation", entity)


def death(key: str, version: int = 1) -> dict[str, Any]:
    entity = {
        "id_number": key,
        "certificate_no": f"DEATHCERT{key[-6:]}",
        "date_of_death": datetime.date(2025, 3, 1),
        "place": f"PLACESECRET{key[-6:]}",
    }
    return envelope("death", key, version, "health", entity, event_type="died", op="c")


def envelope(
    entity_type: str,
    key: str,
    version: int,
    authority: str,
    after: dict[str, Any] | None,
    *,
    event_type: str = "updated",
    op: str = "u",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "event_id": event_id(authority, entity_type, key, version),
        "event_type": event_type,
        "op": op,
        "entity_type": entity_type,
        "entity_key": key,
        "authority": authority,
        "authority_version": version,
        "valid_from": None,
        "recorded_at": RECORDED + version,
        "correction": False,
        "supersedes_key": None,
        "legal_basis": "Regulations on Household Registration",
        "restrictions": [],
        "source": {"connector": "sdk", "department": authority, "system": None, "table": None, "position": None},
        "ts_ms": RECORDED + version,
        "before": None,
        "after": after,
        **extra,
    }


# Three holders (all / interest-only / district condition) and one whose agreement expired.
THREE_HOLDERS: list[dict[str, Any]] = [
    {
        "id": "hrss-all",
        "holder": "hrss",
        "purpose": "pension entitlement checks",
        "legal_basis": "Social Insurance Law, art. 16",
        "valid_from": "2020-01-01",
        "interest": "all",
        "grants": {"person": ["id_number", "name", "birth_date", "status"], "death": ["id_number", "date_of_death"]},
    },
    {
        "id": "gjj-interest",
        "holder": "housing_fund",
        "purpose": "provident fund accounts",
        "legal_basis": "Regulations on the Administration of Housing Provident Fund, art. 13",
        "valid_from": "2020-01-01",
        "interest": "interest",
        "grants": {"person": ["id_number", "name", "address"], "death": ["id_number", "date_of_death"]},
    },
    {
        "id": "tax-district",
        "holder": "tax",
        "purpose": "taxpayer registration in district 110105",
        "legal_basis": "Tax Collection Law, art. 6",
        "valid_from": "2020-01-01",
        "interest": "all",
        "condition": {"field": "district_code", "in": ["110105"]},
        "grants": {
            "person": ["id_number", "name", "district_code", "address"],
            "enterprise": ["uscc", "name", "district_code"],
        },
    },
    {
        "id": "health-expired",
        "holder": "health",
        "purpose": "public health services",
        "legal_basis": "Basic Medical and Health Care Law, art. 15",
        "valid_from": "2020-01-01",
        "valid_to": "2021-12-31",
        "grants": {"person": ["id_number", "name"]},
    },
]


def write_agreements(path: Path, items: list[dict[str, Any]] | None = None) -> Path:
    path.write_text(yaml.safe_dump({"agreements": items or THREE_HOLDERS}, allow_unicode=True))
    return path


# -- the broker side ---------------------------------------------------------------------------------------


class Kafka:
    """Publishing change events and reading topics to their end, as the tests need, on one test namespace."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = RegistryClient(settings.registry_url)
        self.serde = Serde(self.registry)
        self.producer = Producer(confluent_producer_config(settings))
        self._schemas: dict[str, dict[str, Any]] = {}

    def publish(self, *changes: dict[str, Any], on: str | None = None) -> None:
        """Encode and produce changes to their change topic (``on``: another entity type's topic)."""
        for change in changes:
            entity_type = on or change["entity_type"]
            schema = self._schemas.setdefault(entity_type, change_schema(entity_type))
            topic = self.settings.topic(f"change.{entity_type}")
            value = self.serde.encode(schema, f"{topic}-value", change)
            self.raw(topic, change["entity_key"].encode(), value)
        self.flush()

    def raw(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value)
                return
            except BufferError:
                self.producer.poll(0.1)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0, "the broker did not take the test's records"

    def read(self, catalog_name: str) -> list[Message]:
        topic = self.settings.topic(catalog_name)
        return list(read_to_end(self.settings, whole_topics(self.settings, [topic])))

    def decoded(self, catalog_name: str) -> list[dict[str, Any]]:
        return [dict(self.serde.decode(m.value()).record) for m in self.read(catalog_name)]

    def committed(self, group: str, catalog_name: str) -> int:
        """How many records of a topic the group has committed (committed offsets are right on every broker)."""
        consumer = reader(self.settings)
        try:
            topic = self.settings.topic(catalog_name)
            parts = [TopicPartition(topic, p) for p in partitions_of(consumer, topic)]
            cg = Consumer({**confluent_config(self.settings), "group.id": self.settings.topic(group)})
            try:
                return sum(max(tp.offset, 0) for tp in cg.committed(parts, timeout=10))
            finally:
                cg.close()
        finally:
            consumer.close()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def spawn_distributor(config: Path, settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``onceonly distributor run`` as its own process on the test's namespace, its output appended to ``log``."""
    command = [sys.executable, "-m", "onceonly", "distributor", "run", str(config), *args]
    command += ["--state-dir", str(log.parent / "no-stack")]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=process_env(settings), stdout=out, stderr=subprocess.STDOUT)


@contextmanager
def running(distributor: Distributor, timeout: float = 60.0) -> Iterator[Distributor]:
    """The distributor in a thread, ready (subscribed) before the block starts; stopped after it."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            distributor.run(stop)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=target, name="distributor", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not distributor.ready.wait(0.2):
        if errors or time.monotonic() > deadline:
            raise AssertionError(f"the distributor did not start: {errors[:1]}")
    try:
        yield distributor
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the distributor did not stop within 30s"
        if errors:
            raise errors[0]
