"""Agreements: the reference set loads; anything that cannot be applied exactly is refused at load, in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from onceonly.catalog import load_departments, schema_dir
from onceonly.errors import ConfigError
from services.distributor.agreements import load_agreements

REFERENCE = schema_dir() / "agreements.yaml"


def agreement(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "a-1",
        "holder": "tax",
        "purpose": "taxpayer registration",
        "legal_basis": "Tax Collection Law, art. 6",
        "valid_from": "2024-01-01",
        "grants": {"person": ["id_number", "name"]},
    }
    return {**base, **overrides}


def write(tmp_path: Path, *items: dict[str, Any], name: str = "onceonly.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"agreements": list(items)}, allow_unicode=True))
    return path


def refused(tmp_path: Path, *items: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as e:
        load_agreements(write(tmp_path, *items))
    return str(e.value)


def test_the_reference_agreements_load_and_cover_every_department() -> None:
    agreements = load_agreements(REFERENCE)
    assert set(agreements.holders) == set(load_departments().codes())
    gjj = agreements.for_holder("housing_fund", "person")[0]
    assert gjj.interest == "interest"
    assert set(gjj.fields("person")) == {"id_number", "name", "address", "status"}
    tax = agreements.for_holder("tax", "enterprise")[0]
    assert tax.condition is not None and tax.condition.field == "district_code"
    assert {"death"} <= set(agreements.for_holder("hrss", "death")[0].grants)
    assert {"person", "household"} <= set(agreements.for_holder("health", "person")[0].grants)
    assert {"person", "death", "birth"} <= set(agreements.for_holder("civil_affairs", "birth")[0].grants)


def test_granting_a_field_the_entity_does_not_have_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, agreement(grants={"person": ["id_number", "salary"]}))
    assert "agreement a-1: grants person.salary, which person does not have" in message
    assert "id_number" in message  # the hint lists the fields that exist


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"holder": "fbi"}, "holder 'fbi' is not a department"),
        ({"grants": {"car": ["plate"]}}, "grants entity type 'car', which does not exist"),
        ({"grants": {"person": []}}, "person: grants no fields"),
        ({"valid_to": "2023-12-31"}, "is before valid_from"),
        ({"overrides": ["be_nice"]}, "overrides"),
        ({"interest": "some"}, "interest"),
        (
            {"grants": {"death": ["id_number"]}, "condition": {"field": "district_code", "in": ["110105"]}},
            "its condition is on district_code, which death does not have",
        ),
        ({"condition": {"field": "district_code"}}, "a condition needs 'in' or 'prefix' values"),
        ({"secret_extra": 1}, "secret_extra"),
    ],
)
def test_bad_agreements_are_refused_with_a_clear_message(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    assert expected in refused(tmp_path, agreement(**change))


def test_two_agreements_in_force_at_once_on_different_terms_are_refused(tmp_path: Path) -> None:
    a = agreement(id="tax-a", valid_to="2025-12-31")
    b = agreement(id="tax-b", valid_from="2025-07-01", grants={"person": ["id_number", "name", "address"]})
    message = refused(tmp_path, a, b)
    assert "agreements tax-a and tax-b both grant tax person from 2025-07-01 to 2025-12-31" in message
    assert "contradictory overlap" in message and "fields" in message


def test_a_duplicate_grant_is_refused_and_a_successor_is_accepted(tmp_path: Path) -> None:
    assert "duplicate grant" in refused(tmp_path, agreement(id="x"), agreement(id="y"))
    old = agreement(id="old", valid_to="2024-12-31")
    new = agreement(id="new", valid_from="2025-01-01", interest="interest")
    other_entity = agreement(id="ent", grants={"enterprise": "*"})
    assert len(load_agreements(write(tmp_path, old, new, other_entity))) == 3


def test_the_same_id_twice_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, agreement(), agreement(grants={"enterprise": ["uscc"]}))
    assert "the id is used twice" in message


def test_agreements_can_live_in_files_of_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "agreements"
    folder.mkdir()
    write(folder, agreement(id="in-folder"), name="tax.yaml")
    config = tmp_path / "onceonly.yaml"
    config.write_text(
        yaml.safe_dump({"agreements": {"include": ["agreements"], "items": [agreement(id="inline", holder="hrss")]}})
    )
    assert sorted(a.id for a in load_agreements(config)) == ["in-folder", "inline"]
    write(folder, agreement(id="clash", grants={"person": ["id_number"]}), name="tax2.yaml")
    with pytest.raises(ConfigError, match="contradictory overlap"):
        load_agreements(config)


def test_the_cli_refuses_a_bad_agreement_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, agreement(grants={"person": ["id_number", "salary"]}))
    result = subprocess.run(
        [sys.executable, "-m", "onceonly", "distributor", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "grants person.salary, which person does not have" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # one line, maybe wrapped once by the terminal width
    missing = subprocess.run(
        [sys.executable, "-m", "onceonly", "distributor", "run", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "file not found" in missing.stderr and "Traceback" not in missing.stderr
