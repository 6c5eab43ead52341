"""ONCEONLY_SIGNATURES=require end to end: authorities sign, the distributor verifies and signs what it delivers,
the holder verifies its inbox before applying. A forged or tampered record is dead-lettered with the reason at the
first stage that can tell, and nothing of it reaches the holder's store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from distributor.distributor_kit import Kafka, running, wait_for, write_agreements
from publisher.change_kit import person_change, person_id
from subscriber.subscriber_kit import make_store, query, subscriber_config
from subscriber.subscriber_kit import running as subscriber_running

from onceonly import Publisher
from onceonly.kafka import confluent_producer_config
from onceonly.settings import Settings
from onceonly.signing import DISTRIBUTOR, SIGNER_HEADER, signer_for, write_keypair
from onceonly.standard import RegistryClient, change_schema
from services.distributor import Distributor, load_agreements
from services.subscriber.codec import standard_codec

pytestmark = pytest.mark.broker

AGREEMENT = {
    "id": "gjj-all",
    "holder": "housing_fund",
    "purpose": "provident fund accounts",
    "legal_basis": "Regulations on the Administration of Housing Provident Fund, art. 13",
    "valid_from": "2020-01-01",
    "interest": "all",
    "grants": {"person": ["id_number", "name", "address"]},
}


def _reasons(kafka: Kafka, topic: str) -> list[str]:
    out = []
    for message in kafka.read(topic):
        headers = dict(message.headers() or [])
        out.append(headers["__connect.errors.exception.message"].decode())
    return sorted(out)


def test_signed_changes_are_applied_and_forgeries_are_dead_lettered(topics: Settings, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    for department in ("public_security", "tax", DISTRIBUTOR):
        write_keypair(keys, department)
    signed = topics.model_copy(update={"signatures": "require", "signing_keys": keys})
    agreements = load_agreements(write_agreements(tmp_path / "onceonly.yaml", [AGREEMENT]))
    distributor = Distributor(agreements, signed, RegistryClient(signed.registry_url), batch_size=20)
    store = make_store(f"sqlite:///{tmp_path / 'gjj.db'}")
    config = subscriber_config(store, source_topic=["inbox.housing_fund"])
    kafka = Kafka(topics)
    raw = Producer(confluent_producer_config(topics))
    genuine = [person_id(i) for i in range(3)]
    unsigned, by_tax = person_id(10), person_id(11)

    def forge(key: str, headers: list[tuple[str, Any]]) -> None:
        topic = topics.topic("change.person")
        change = {**person_change(key), "authority": "public_security", "event_id": None}
        value = kafka.serde.encode(change_schema("person"), f"{topic}-value", _completed(signed, change))
        raw.produce(topic, value, key.encode(), headers=[*headers, *_signature(signed, "tax", key, value, headers)])
        raw.flush(10)

    with running(distributor), subscriber_running(config, signed, standard_codec(signed)):
        with Publisher(signed) as publisher:
            publisher.publish_many([person_change(k) for k in genuine])
        forge(unsigned, [])
        forge(by_tax, [("sign-as", b"tax")])
        wait_for(lambda: len(query(store, "SELECT sfzhm FROM gjj_grxx")) == 3, 60, "the signed changes to apply")
        wait_for(lambda: len(kafka.read("dlq.distributor")) == 2, 30, "the forged changes to be dead-lettered")

        # An inbox record copied without the distributor's signature, and one altered after it signed it.
        [first, *_] = kafka.read("inbox.housing_fund")
        inbox = topics.topic("inbox.housing_fund")
        raw.produce(inbox, first.value(), first.key())
        tampered = first.value()[:-1] + bytes([first.value()[-1] ^ 1])
        raw.produce(inbox, tampered, first.key(), headers=first.headers())
        raw.flush(10)
        wait_for(lambda: len(kafka.read("dlq.housing_fund")) == 2, 30, "the forged inbox records to be dead-lettered")

    assert sorted(r[0] for r in query(store, "SELECT sfzhm FROM gjj_grxx")) == sorted(genuine)
    upstream = _reasons(kafka, "dlq.distributor")
    assert "missing signature" in upstream[0] or "missing signature" in upstream[1]
    assert any("signer is not the authority of the entity type: tax signed a person change" in r for r in upstream)
    holder = _reasons(kafka, "dlq.housing_fund")
    assert any("missing signature" in r for r in holder) and any("bad signature" in r for r in holder), holder
    signers = [dict(m.headers() or []).get(SIGNER_HEADER, b"").decode() for m in kafka.read("inbox.housing_fund")]
    # the 3 deliveries and the tampered copy of one carry the distributor's signature; the bare copy carries none
    assert sum(s.startswith(f"{DISTRIBUTOR}:") for s in signers) == 4 and signers.count("") == 1, signers


def _completed(settings: Settings, change: dict[str, Any]) -> dict[str, Any]:
    """The change with every default filled, as the SDK would send it (without signing it)."""
    from onceonly.publisher.prepare import Preparer

    unsigned = settings.model_copy(update={"signatures": "off"})
    return Preparer(unsigned, Kafka(settings).serde).complete({k: v for k, v in change.items() if v is not None})


def _signature(
    settings: Settings, department: str, key: str, value: bytes, headers: list[tuple[str, Any]]
) -> list[tuple[str, bytes]]:
    if ("sign-as", b"tax") not in headers:
        return []
    signer = signer_for(settings, department)
    assert signer is not None
    return signer.headers(key.encode(), value)
