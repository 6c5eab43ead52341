"""JSON-ish values into Avro values, by the change schema: what every text-speaking source relies on."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from onceonly.publisher import Coercer, coerce_change, coerce_entity, to_millis
from onceonly.standard import RecordInvalid, change_schema

SCHEMA = change_schema("person")


def test_dates_and_timestamps_from_text() -> None:
    change = coerce_change(
        SCHEMA,
        {"recorded_at": "2024-05-01T08:00:00+08:00", "valid_from": "2024-05-01", "after": {"birth_date": "19491231"}},
    )
    assert change["recorded_at"] == to_millis(datetime(2024, 5, 1, 0, 0, tzinfo=UTC))
    assert change["valid_from"] == to_millis(date(2024, 5, 1))
    assert change["after"]["birth_date"] == date(1949, 12, 31)


def test_python_values_pass_through() -> None:
    change = {"authority_version": 3, "recorded_at": 1_700_000_000_000, "after": {"birth_date": date(1949, 12, 31)}}
    assert coerce_change(SCHEMA, change) == change


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"after": {"adress": "x"}}, "after.adress", "is not a field of Person"),
        ({"colour": "red"}, "colour", "is not a field of PersonChange"),
        ({"after": {"birth_date": "1949-13-01"}}, "after.birth_date", "is not a date"),
        ({"authority_version": "seven"}, "authority_version", "is not an integer"),
        ({"after": {"name": None}}, "after.name", "must not be null"),
        ({"after": {"sex": 2}}, "after.sex", "expected a string"),
        ({"after": "Wang"}, "after", "expected an object"),
    ],
)
def test_refusals_name_the_field(change: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(RecordInvalid) as e:
        coerce_change(SCHEMA, change)
    assert e.value.field == field
    assert reason in e.value.reason


def test_csv_cells() -> None:
    row = {"id_number": "11010519491231002X", "ethnicity": "", "district_code": 110105, "birth_date": "1949-12-31"}
    record = coerce_entity(SCHEMA, row, Coercer(empty_is_null=True, numbers_as_text=True))
    assert record["ethnicity"] is None
    assert record["district_code"] == "110105"
    household = coerce_entity(change_schema("household"), {"member_id_numbers": "a; b;"})
    assert household["member_id_numbers"] == ["a", "b"]  # a list cell: ';'-separated or a JSON list
    assert coerce_entity(change_schema("household"), {"member_id_numbers": '["a"]'})["member_id_numbers"] == ["a"]
