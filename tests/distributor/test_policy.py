"""The delivery rules, without a broker: scope, conditions, validity, citizen restrictions, projection, fills."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import pytest
from distributor_kit import (
    NEW_ID18,
    OLD_ID15,
    THREE_HOLDERS,
    death,
    enterprise,
    envelope,
    person,
    person_id,
    write_agreements,
)

from services.distributor.agreements import Agreements, load_agreements
from services.distributor.policy import Decision, decide_change, decide_fill, fill_event_id
from services.distributor.projection import Route, encode_envelope
from services.distributor.state import InterestSet

NOW = datetime(2025, 6, 1, tzinfo=UTC)
KEY = person_id(1)


@pytest.fixture
def agreements(tmp_path: Path) -> Agreements:
    extra = {
        "id": "psb-override",
        "holder": "public_security",
        "purpose": "household registration",
        "legal_basis": "Regulations on Household Registration",
        "valid_from": "2020-01-01",
        "overrides": ["address_secret", "identity_protected"],
        "grants": {"person": ["id_number", "address"], "household": ["household_id", "address"]},
    }
    return load_agreements(write_agreements(tmp_path / "a.yaml", [*THREE_HOLDERS, extra]))


def routes(agreements: Agreements, entity_type: str) -> list[Route]:
    return [Route.build(a, entity_type, f"inbox.{a.holder}") for a in agreements.for_entity(entity_type)]


def by_holder(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.holder: d for d in decisions}


def test_each_holder_gets_only_its_granted_fields(agreements: Agreements) -> None:
    got = by_holder(decide_change(person(KEY), routes(agreements, "person"), InterestSet(), NOW))
    assert set(got) == {"hrss", "tax", "health", "public_security"}  # housing_fund registered no interest
    assert set(got["hrss"].record["after"]) == {"id_number", "name", "birth_date", "status"}  # type: ignore[index]
    assert got["hrss"].fields == ("id_number", "name", "birth_date", "status")
    assert set(got["tax"].record["after"]) == {"id_number", "name", "district_code", "address"}  # type: ignore[index]
    assert got["tax"].record["event_id"] == person(KEY)["event_id"]  # type: ignore[index]


def test_the_projected_bytes_hold_no_ungranted_value(agreements: Agreements) -> None:
    change = person(KEY)
    for decision in decide_change(change, routes(agreements, "person"), InterestSet(), NOW):
        if not decision.delivered:
            continue
        assert decision.route is not None
        out = io.BytesIO()
        fastavro.schemaless_writer(out, fastavro.parse_schema(decision.route.schema), decision.record)
        raw = out.getvalue()
        granted = [str(v) for k, v in change["after"].items() if k in decision.route.fields]
        for name, value in change["after"].items():
            if name in decision.route.fields or not isinstance(value, str) or any(value in g for g in granted):
                continue  # a district code is also part of the ID number: only values of their own can be looked for
            assert value.encode() not in raw, f"{decision.holder} got {name}"
        schema_text = str(decision.route.schema)
        assert "ethnicity" not in schema_text and "residence_permit_no" not in schema_text


def test_interest_only_holders_get_entities_they_registered_and_upgrades_of_them(agreements: Agreements) -> None:
    interest = InterestSet()
    interest.add("housing_fund", "person", OLD_ID15)
    assert "housing_fund" not in by_holder(decide_change(person(KEY), routes(agreements, "person"), interest, NOW))
    old = person(OLD_ID15, 3)
    assert "housing_fund" in by_holder(decide_change(old, routes(agreements, "person"), interest, NOW))
    upgrade = {**person(NEW_ID18, 4), "event_type": "identifier_upgraded", "supersedes_key": OLD_ID15}
    delivered = by_holder(decide_change(upgrade, routes(agreements, "person"), interest, NOW))["housing_fund"].record
    assert delivered is not None
    assert (delivered["entity_key"], delivered["supersedes_key"], delivered["event_type"]) == (
        NEW_ID18,
        OLD_ID15,
        "identifier_upgraded",
    )


def test_interest_in_a_15_digit_number_covers_a_death_that_overtakes_its_upgrade(agreements: Agreements) -> None:
    interest = InterestSet()
    interest.add("housing_fund", "person", OLD_ID15)
    died = death(NEW_ID18)  # health uses the 18-digit number; the upgrade has not reached the distributor yet
    assert "housing_fund" in by_holder(decide_change(died, routes(agreements, "death"), interest, NOW))
    assert "housing_fund" not in by_holder(decide_change(death(KEY), routes(agreements, "death"), interest, NOW))


def test_a_district_condition_delivers_residents_and_those_leaving(agreements: Agreements) -> None:
    rs = routes(agreements, "person")
    elsewhere = person(KEY, district="310101")
    assert "tax" not in by_holder(decide_change(elsewhere, rs, InterestSet(), NOW))
    leaving = {**elsewhere, "before": person(KEY)["after"]}
    assert "tax" in by_holder(decide_change(leaving, rs, InterestSet(), NOW))
    # without a `before` in the event, the distributor's state of the entity says where it was
    assert "tax" in by_holder(decide_change(elsewhere, rs, InterestSet(), NOW, lambda: person(KEY)["after"]))
    ent = routes(agreements, "enterprise")
    assert "tax" in by_holder(decide_change(enterprise("91110105MA00000001"), ent, InterestSet(), NOW))
    assert not decide_change(enterprise("91310101MA00000002", district="310101"), ent, InterestSet(), NOW)


def test_an_expired_agreement_withholds_and_says_why(agreements: Agreements) -> None:
    health = by_holder(decide_change(person(KEY), routes(agreements, "person"), InterestSet(), NOW))["health"]
    assert not health.delivered and health.category == "expired"
    assert health.reason == "agreement health-expired expired (valid to 2021-12-31)"
    early = by_holder(
        decide_change(person(KEY), routes(agreements, "person"), InterestSet(), datetime(2019, 1, 1, tzinfo=UTC))
    )
    assert "not in force until 2020-01-01" in str(early["hrss"].reason)


def test_address_secret_withholds_the_address_unless_the_agreement_overrides_it(agreements: Agreements) -> None:
    change = {**person(KEY), "restrictions": ["address_secret"]}
    got = by_holder(decide_change(change, routes(agreements, "person"), InterestSet(), NOW))
    assert got["tax"].delivered and got["tax"].record["after"]["address"] is None  # type: ignore[index]
    assert got["tax"].withheld_fields == ("address",) and "address" not in got["tax"].fields
    assert got["tax"].reason == "address_secret: address withheld"
    assert got["public_security"].record["after"]["address"] == change["after"]["address"]  # type: ignore[index]
    assert got["hrss"].withheld_fields == ()  # it was never granted the address


def test_a_restriction_that_cannot_blank_a_required_field_withholds_the_record(tmp_path: Path) -> None:
    household = envelope(
        "household", "HH1", 1, "public_security",
        {"household_id": "HH1", "head_id_number": KEY, "member_id_numbers": [KEY], "district_code": "110105",
         "address": "SECRET ROAD", "kind": "family"},
        restrictions=["address_secret"],
    )  # fmt: skip
    grants = {"household": ["household_id", "address"]}
    health = {**THREE_HOLDERS[0], "id": "health-hh", "holder": "health", "grants": grants}
    psb = {**health, "id": "psb-hh", "holder": "public_security", "overrides": ["address_secret"]}
    agreements = load_agreements(write_agreements(tmp_path / "hh.yaml", [health, psb]))
    got = by_holder(decide_change(household, routes(agreements, "household"), InterestSet(), NOW))
    assert not got["health"].delivered and "address cannot be left out" in str(got["health"].reason)
    assert got["public_security"].delivered


def test_identity_protected_records_go_only_to_holders_that_override_it(agreements: Agreements) -> None:
    change = {**person(KEY), "restrictions": ["identity_protected"]}
    got = by_holder(decide_change(change, routes(agreements, "person"), InterestSet(), NOW))
    assert [h for h, d in got.items() if d.delivered] == ["public_security"]
    assert got["hrss"].category == "restricted" and "identity_protected" in str(got["hrss"].reason)


def test_a_fill_is_the_latest_state_as_a_snapshot_with_its_own_event_id(agreements: Agreements) -> None:
    latest = {**person(KEY, 7), "before": person(KEY, 6)["after"]}
    fill = decide_fill("housing_fund", "person", latest, routes(agreements, "person"), NOW)
    assert fill is not None and fill.record is not None and fill.kind == "fill"
    assert (fill.record["op"], fill.record["event_type"], fill.record["before"]) == ("r", "snapshot", None)
    assert fill.record["authority_version"] == 7 and set(fill.record["after"]) == {"id_number", "name", "address"}
    assert fill.event_id == fill_event_id("housing_fund", latest["event_id"]) != latest["event_id"]
    nobody = decide_fill("market_regulation", "person", latest, routes(agreements, "person"), NOW)
    assert nobody is not None and not nobody.delivered and nobody.category == "no_agreement"
    away = decide_fill("tax", "person", person(KEY, district="310101"), routes(agreements, "person"), NOW)
    assert away is not None and away.category == "condition"
    gone = envelope("person", KEY, 9, "public_security", None, op="d")
    assert decide_fill("housing_fund", "person", gone, routes(agreements, "person"), NOW) is None


def test_the_agreement_in_force_governs_over_its_predecessor(tmp_path: Path) -> None:
    base = THREE_HOLDERS[0]
    old = {**base, "id": "old", "valid_to": "2024-12-31", "grants": {"person": ["id_number"]}}
    new = {**base, "id": "new", "valid_from": "2025-01-01"}
    agreements = load_agreements(write_agreements(tmp_path / "a.yaml", [old, new]))
    (decision,) = decide_change(person(KEY), routes(agreements, "person"), InterestSet(), NOW)
    assert decision.route is not None and decision.route.agreement.id == "new" and decision.delivered


def test_spliced_inbox_bytes_equal_a_whole_encode(agreements: Agreements) -> None:
    """The distributor encodes a change's envelope once and each holder's before/after after it: same bytes."""
    changes = [
        person(KEY),
        {**person(KEY, 2), "restrictions": ["address_secret"], "before": person(KEY)["after"], "correction": True},
        {**person(NEW_ID18, 3), "supersedes_key": OLD_ID15, "valid_from": datetime(2025, 1, 1, tzinfo=UTC)},
        envelope("person", KEY, 4, "public_security", None, op="d"),
    ]
    compared = 0
    for change in changes:
        for decision in decide_change(change, routes(agreements, "person"), InterestSet(), NOW):
            if decision.record is None or decision.route is None:
                continue
            whole = io.BytesIO()
            fastavro.schemaless_writer(whole, fastavro.parse_schema(decision.route.schema), decision.record)
            spliced = decision.route.encode_body(encode_envelope("person", decision.record), decision.record)
            assert spliced == whole.getvalue(), decision.holder
            compared += 1
    assert compared >= 10
