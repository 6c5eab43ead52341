"""One mixed workload through a real distributor, then every promise checked on what landed in Kafka.

Holders: hrss (all persons and deaths), housing_fund (interest only), tax (district 110105 only), health (its
agreement expired), public_security (overrides citizen restrictions).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message
from distributor_kit import (
    NEW_ID18,
    OLD_ID15,
    THREE_HOLDERS,
    Kafka,
    death,
    enterprise,
    person,
    person_id,
    running,
    wait_for,
    write_agreements,
)
from typer.testing import CliRunner

from onceonly.cli import app
from onceonly.settings import Settings
from onceonly.standard import RegistryClient, unframe
from onceonly.testing import process_env
from services.distributor import Distributor, InterestClient, LedgerBroken, load_agreements
from services.distributor.audit import ledger_entries, verify_ledger
from services.distributor.policy import fill_event_id

pytestmark = pytest.mark.broker

PSB = {
    "id": "psb-override",
    "holder": "public_security",
    "purpose": "household registration",
    "legal_basis": "Regulations on Household Registration, art. 7",
    "valid_from": "2020-01-01",
    "overrides": ["address_secret", "identity_protected"],
    "grants": {"person": ["id_number", "address"]},
}
GRANTS = {a["holder"]: a["grants"] for a in [*THREE_HOLDERS, PSB]}
P = [person_id(i) for i in range(1, 7)]
Q = [person_id(i, district="310101") for i in range(1, 4)]
MOVER, SECRET, HIDDEN = person_id(20), person_id(21), person_id(22)
E = ["91110105MA00000001", "91110105MA00000002", "91310101MA00000003"]


@dataclass
class Scenario:
    kafka: Kafka
    published: list[dict[str, Any]] = field(default_factory=list)
    inbox: dict[str, list[Message]] = field(default_factory=dict)
    decoded: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    dlq: list[Message] = field(default_factory=list)

    def publish(self, *changes: dict[str, Any]) -> None:
        self.published += changes
        self.kafka.publish(*changes)


def phase_a() -> list[dict[str, Any]]:
    changes = [person(k, v) for k in P for v in (1, 2)]
    changes += [person(k, district="310101") for k in Q]
    changes += [person(MOVER, 1), person(MOVER, 2, district="310101")]  # no `before`: state says where it was
    changes += [{**person(SECRET), "restrictions": ["address_secret"]}]
    changes += [{**person(HIDDEN), "restrictions": ["identity_protected"]}]
    changes += [enterprise(E[0]), enterprise(E[1]), enterprise(E[2], district="310101")]
    return changes


def phase_c() -> list[dict[str, Any]]:
    return [person(P[0], 3), person(P[1], 3), person(OLD_ID15, 1)]


def phase_d() -> list[dict[str, Any]]:
    """After the old key's change landed: keys live in different partitions, so only the publisher orders them."""
    upgrade = {**person(NEW_ID18, 2), "event_type": "identifier_upgraded", "supersedes_key": OLD_ID15}
    correction = {**person(NEW_ID18, 3, name="Corrected Name"), "event_type": "corrected", "correction": True}
    return [upgrade, correction, death(P[0]), death(Q[0]), person(P[5], 3)]


@pytest.fixture(scope="module")
def scenario(module_topics: Settings, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    settings = module_topics
    path = write_agreements(tmp_path_factory.mktemp("agreements") / "onceonly.yaml", [*THREE_HOLDERS, PSB])
    distributor = Distributor(load_agreements(path), settings, RegistryClient(settings.registry_url), batch_size=7)
    s = Scenario(Kafka(settings))

    def done(n: int) -> bool:
        return sum(s.kafka.committed("distributor", f"change.{e}") for e in ("person", "enterprise", "death")) >= n

    with running(distributor):
        s.publish(*phase_a())
        s.kafka.raw(settings.topic("change.person"), b"garbage", b"\x00\x00\x00\x00\x07not avro at all")
        s.kafka.publish({**person(person_id(30)), "entity_type": "enterprise"}, on="person")  # claims to be another
        wait_for(lambda: done(len(s.published) + 2), 60, "phase A to be distributed")
        with InterestClient(settings, s.kafka.serde) as client:
            client.register("housing_fund", "person", P[0], reason="account 1")
            client.register("housing_fund", "person", P[1], reason="account 2")
            client.register("housing_fund", "person", OLD_ID15, reason="account 3")  # nothing known yet: no fill
            client.end("housing_fund", "person", P[1], reason="account closed")
        wait_for(lambda: s.kafka.committed("distributor", "interest") >= 4, 60, "interest to be processed")
        s.publish(*phase_c())
        wait_for(lambda: done(len(s.published) + 2), 60, "phase C to be distributed")
        s.publish(*phase_d())
        wait_for(lambda: done(len(s.published) + 2), 60, "phase D to be distributed")
    for holder in GRANTS:
        s.inbox[holder] = s.kafka.read(f"inbox.{holder}")
        s.decoded[holder] = [dict(s.kafka.serde.decode(m.value()).record) for m in s.inbox[holder]]
    s.ledger = [e for _, e in ledger_entries(settings, s.kafka.serde)]
    s.dlq = s.kafka.read("dlq.distributor")
    return s


def delivered(s: Scenario, holder: str) -> list[tuple[str, str, int, str]]:
    return [(r["entity_type"], r["entity_key"], r["authority_version"], r["op"]) for r in s.decoded[holder]]


def test_no_ungranted_field_name_or_value_is_in_any_inbox(scenario: Scenario) -> None:
    registry = RegistryClient(scenario.kafka.settings.registry_url)
    published = {(c["entity_type"], c["entity_key"], c["authority_version"]): c for c in scenario.published}
    checked = 0
    for holder, messages in scenario.inbox.items():
        for message in messages:
            raw = message.value() or b""
            schema = registry.get_schema(unframe(raw)[0])
            before = next(f for f in schema["fields"] if f["name"] == "before")  # defines the entity record
            entity = next(t for t in before["type"] if isinstance(t, dict))
            record = scenario.kafka.serde.decode(raw).record
            granted = GRANTS[holder][record["entity_type"]]
            assert [f["name"] for f in entity["fields"]] == [
                n for n in granted if n in {f["name"] for f in entity["fields"]}
            ]
            assert {f["name"] for f in entity["fields"]} == set(granted), f"{holder} schema {entity['fields']}"
            original = published[(record["entity_type"], record["entity_key"], record["authority_version"])]["after"]
            values = [str(v) for k, v in original.items() if k in granted and v is not None]
            envelope = "".join(str(v) for k, v in record.items() if k not in ("before", "after")).encode()
            for name, value in original.items():
                if name in granted:
                    continue
                assert name.encode() not in raw or name.encode() in envelope  # e.g. the flag "address_secret"
                if isinstance(value, str) and len(value) >= 6 and not any(value in v for v in values):
                    assert value.encode() not in raw, f"{holder} received {name} of {record['entity_key']}"
            checked += 1
    assert checked == sum(len(m) for m in scenario.inbox.values()) > 50


def test_each_holder_got_exactly_its_entitlement_with_fill_messages(scenario: Scenario) -> None:
    persons = [c for c in scenario.published if c["entity_type"] == "person" and c["entity_key"] != person_id(30)]
    everyone = [(c["entity_type"], c["entity_key"], c["authority_version"], "u") for c in persons]
    hrss = [p for p in everyone if p[1] != HIDDEN] + [("death", P[0], 1, "c"), ("death", Q[0], 1, "c")]
    assert sorted(delivered(scenario, "hrss")) == sorted(hrss)

    in_district = [p for p in everyone if p[1] not in Q and p[1] != HIDDEN]  # the mover's move out included
    tax = [*in_district, ("enterprise", E[0], 1, "u"), ("enterprise", E[1], 1, "u")]
    assert sorted(delivered(scenario, "tax")) == sorted(tax)

    gjj = [
        ("person", P[0], 2, "r"),  # fill on registration: the state then
        ("person", P[1], 2, "r"),  # fill, then the interest ended: P[1] v3 is not sent
        ("person", P[0], 3, "u"),
        ("person", OLD_ID15, 1, "u"),
        ("person", NEW_ID18, 2, "u"),  # the upgrade, found through its supersedes_key
        ("person", NEW_ID18, 3, "u"),  # the correction: the interest moved to the new key
        ("death", P[0], 1, "c"),  # interest in a key covers the entity types granted under it
    ]
    assert sorted(delivered(scenario, "housing_fund")) == sorted(gjj)  # order across keys is per partition only
    fills = [r for r in scenario.decoded["housing_fund"] if r["op"] == "r"]
    assert {r["event_type"] for r in fills} == {"snapshot"}
    fills.sort(key=lambda r: P.index(r["entity_key"]))
    assert fills[0]["event_id"] == fill_event_id("housing_fund", person(P[0], 2)["event_id"])
    assert fills[0]["after"] == {
        "id_number": P[0],
        "name": person(P[0], 2)["after"]["name"],
        "address": person(P[0], 2)["after"]["address"],
    }

    assert delivered(scenario, "health") == []
    assert sorted(delivered(scenario, "public_security")) == sorted(everyone)


def test_restrictions_withhold_what_the_agreement_does_not_override(scenario: Scenario) -> None:
    tax_secret = next(r for r in scenario.decoded["tax"] if r["entity_key"] == SECRET)
    assert tax_secret["after"]["address"] is None and tax_secret["after"]["name"]
    psb_secret = next(r for r in scenario.decoded["public_security"] if r["entity_key"] == SECRET)
    assert psb_secret["after"]["address"] == person(SECRET)["after"]["address"]
    entry = next(e for e in scenario.ledger if e["holder"] == "tax" and e["entity_key"] == SECRET)
    assert (entry["outcome"], entry["withheld_fields"], entry["reason"]) == (
        "delivered",
        ["address"],
        "address_secret: address withheld",
    )
    hidden = next(e for e in scenario.ledger if e["holder"] == "hrss" and e["entity_key"] == HIDDEN)
    assert hidden["outcome"] == "withheld" and "identity_protected" in hidden["reason"] and hidden["fields"] == []


def test_the_ledger_verifies_and_says_why_the_expired_agreement_delivered_nothing(scenario: Scenario) -> None:
    result = verify_ledger(scenario.kafka.settings)
    assert result.entries == len(scenario.ledger) and result.seq == len(scenario.ledger)
    health = [e for e in scenario.ledger if e["holder"] == "health"]
    assert health and {(e["outcome"], e["reason"]) for e in health} == {
        ("withheld", "agreement health-expired expired (valid to 2021-12-31)")
    }
    delivered_entries = [e for e in scenario.ledger if e["outcome"] == "delivered"]
    assert len(delivered_entries) == sum(len(m) for m in scenario.inbox.values())
    sample = next(e for e in delivered_entries if e["holder"] == "tax" and e["entity_type"] == "enterprise")
    assert sample["agreement_id"] == "tax-district" and sample["purpose"] and sample["legal_basis"]
    assert sample["fields"] == ["uscc", "name", "district_code"] and sample["inbox"].endswith("inbox.tax")
    fill = next(e for e in delivered_entries if e["kind"] == "fill")
    assert fill["holder"] == "housing_fund" and fill["event_id"] != fill["change_event_id"]


def test_undecodable_and_misrouted_changes_are_dead_lettered_and_distribution_goes_on(scenario: Scenario) -> None:
    assert len(scenario.dlq) == 2
    headers = [dict(m.headers() or []) for m in scenario.dlq]
    garbage = next(m for m in scenario.dlq if m.key() == b"garbage")
    assert garbage.value() == b"\x00\x00\x00\x00\x07not avro at all"  # the original bytes
    reasons = [h["__connect.errors.exception.message"].decode() for h in headers]
    assert any("schema id 7" in r or "does not decode" in r or "ends early" in r for r in reasons), reasons
    assert any("arrived on the change topic of person" in r for r in reasons), reasons
    assert {h["__connect.errors.topic"].decode() for h in headers} == {scenario.kafka.settings.topic("change.person")}
    stages = {m.key(): dict(m.headers() or [])["__connect.errors.stage"] for m in scenario.dlq}
    assert stages == {b"garbage": b"VALUE_CONVERTER", person_id(30).encode(): b"TRANSFORMATION"}
    assert {h["__connect.errors.connector.name"] for h in headers} == {b"distributor"}
    assert ("person", P[5], 3, "u") in delivered(scenario, "hrss")  # published after both


def test_identifier_upgrades_and_corrections_keep_their_meaning(scenario: Scenario) -> None:
    for holder in ("hrss", "housing_fund", "tax"):
        upgrade = next(r for r in scenario.decoded[holder] if r["event_type"] == "identifier_upgraded")
        assert (upgrade["entity_key"], upgrade["supersedes_key"], upgrade["correction"]) == (NEW_ID18, OLD_ID15, False)
        correction = next(r for r in scenario.decoded[holder] if r["event_type"] == "corrected")
        assert correction["correction"] is True and correction["after"]["name"] == "Corrected Name"


def test_every_inbox_keeps_each_entitys_order(scenario: Scenario) -> None:
    for holder, records in scenario.decoded.items():
        seen: dict[tuple[str, str], list[int]] = defaultdict(list)
        for r in records:
            seen[(r["entity_type"], r["entity_key"])].append(r["authority_version"])
        for key, versions in seen.items():
            assert versions == sorted(versions), f"{holder} {key}: {versions}"
        events = [r["event_id"] for r in records]
        assert len(events) == len(set(events)), f"{holder} got a change twice in a clean run"


def test_interest_state_is_kept_in_kafka(scenario: Scenario) -> None:
    from services.distributor import current_interest

    assert sorted(current_interest(scenario.kafka.settings, scenario.kafka.serde)) == [
        ("housing_fund", "person", NEW_ID18),
        ("housing_fund", "person", P[0]),
    ]


def test_audit_verify_passes_on_the_ledger_and_names_the_entry_in_a_tampered_copy(
    scenario: Scenario, tmp_path: Path
) -> None:
    settings = scenario.kafka.settings
    env = process_env(settings, ONCEONLY_STATE_DIR=str(tmp_path), COLUMNS="300")
    runner = CliRunner()
    clean = runner.invoke(app, ["audit", "verify"], env=env)
    assert clean.exit_code == 0 and f"ledger ok: {len(scenario.ledger)} entries" in clean.output, clean.output
    copy = tmp_path / "ledger.jsonl"
    assert runner.invoke(app, ["audit", "export", "--out", str(copy)], env=env).exit_code == 0
    assert runner.invoke(app, ["audit", "verify", "--file", str(copy)], env=env).exit_code == 0
    lines = copy.read_text().splitlines()
    del lines[9]  # an auditor's copy with one delivery taken out
    copy.write_text("\n".join(lines) + "\n")
    tampered = runner.invoke(app, ["audit", "verify", "--file", str(copy)], env=env)
    assert isinstance(tampered.exception, LedgerBroken)
    assert "entry seq 11 at line 10" in str(tampered.exception) and "entry seq 10 was removed" in str(
        tampered.exception
    )
    shown = runner.invoke(app, ["audit", "show", "--key", SECRET, "--holder", "tax"], env=env)
    assert '"withheld_fields": [' in shown.output and "address_secret" in shown.output
