"""Rules beyond Avro types, applied to whole change records."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from onceonly.standard import RecordInvalid, change_problems, check_change, event_id

GOOD_ID = "11010519491231002X"


def change(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": event_id("public_security", "person", GOOD_ID, 1),
        "event_type": "created",
        "op": "c",
        "entity_type": "person",
        "entity_key": GOOD_ID,
        "authority": "public_security",
        "authority_version": 1,
        "recorded_at": 0,
        "restrictions": [],
        "after": {"id_number": GOOD_ID, "name": "王芳", "sex": "2", "birth_date": datetime.date(1949, 12, 31)},
    }
    record.update(overrides)
    return record


def test_a_good_change_has_no_problems() -> None:
    assert change_problems(change()) == []
    check_change(change())


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"op": "x"}, "op"),
        ({"after": None}, "after"),
        ({"entity_key": ""}, "entity_key"),
        ({"authority_version": 0}, "authority_version"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"restrictions": ["top_secret"]}, "restrictions"),
        ({"supersedes_key": GOOD_ID}, "supersedes_key"),
        ({"after": {"id_number": "110105194912310021", "name": "x"}}, "after.id_number"),
        ({"after": {"id_number": GOOD_ID, "birth_date": datetime.date(2999, 1, 1)}}, "after.birth_date"),
        ({"after": {"member_id_numbers": [GOOD_ID, "123"]}}, "after.member_id_numbers"),
        ({"after": {"uscc": "91350100M000100Y40"}}, "after.uscc"),
    ],
)
def test_each_problem_names_its_field(overrides: dict[str, Any], field: str) -> None:
    problems = change_problems(change(**overrides))
    assert [p.field for p in problems] == [field]
    with pytest.raises(RecordInvalid) as raised:
        check_change(change(**overrides))
    assert raised.value.field == field


def test_a_delete_needs_no_after() -> None:
    assert change_problems(change(op="d", after=None)) == []
