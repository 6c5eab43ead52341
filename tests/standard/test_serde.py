"""The Confluent wire format against the stack's registry: round trips, schema resolution, typed errors."""

from __future__ import annotations

import contextlib
import copy
import datetime
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from onceonly.settings import Settings
from onceonly.stack.process import free_port
from onceonly.standard import (
    BadMagicByte,
    EmptyPayload,
    RecordInvalid,
    RegistryClient,
    RegistryUnavailable,
    Serde,
    SerdeError,
    TruncatedPayload,
    UnknownSchemaId,
    change_schema,
    event_id,
)

GOOD_ID = "11010519491231002X"


def person_change(version: int = 1, **after: Any) -> dict[str, Any]:
    return {
        "event_id": event_id("public_security", "person", GOOD_ID, version),
        "event_type": "moved_in",
        "op": "u",
        "entity_type": "person",
        "entity_key": GOOD_ID,
        "authority": "public_security",
        "authority_version": version,
        "recorded_at": 1_700_000_000_000,
        "restrictions": ["address_secret"],
        "after": {
            "id_number": GOOD_ID,
            "name": "王芳",
            "sex": "2",
            "birth_date": datetime.date(1949, 12, 31),
            "district_code": "110105",
            "address": "朝阳区建国路1号",
            **after,
        },
    }


@pytest.fixture(scope="module")
def serde(stack: Any) -> Serde:
    return Serde(RegistryClient(stack.registry_url))


@pytest.fixture
def subject(settings: Settings) -> str:
    return settings.topic("change.person") + "-value"


def test_round_trip_keeps_every_field(serde: Serde, subject: str) -> None:
    data = serde.encode(change_schema("person"), subject, person_change())
    assert data[0] == 0
    decoded = serde.decode(data)
    assert decoded.schema_id == struct.unpack(">I", data[1:5])[0]
    record = decoded.record
    assert record["after"]["address"] == "朝阳区建国路1号"
    assert record["after"]["birth_date"] == datetime.date(1949, 12, 31)
    assert record["recorded_at"] == datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC)
    assert record["restrictions"] == ["address_secret"]
    assert record["correction"] is False and record["supersedes_key"] is None


def test_a_reader_resolves_an_older_writer(serde: Serde, subject: str) -> None:
    old = change_schema("person")
    person = old["fields"][-2]["type"][1]
    person["fields"] = [f for f in person["fields"] if f["name"] != "residence_permit_no"]
    data = serde.encode(old, subject, person_change())
    decoded = serde.decode(data, reader_schema=change_schema("person"))
    assert decoded.record["after"]["residence_permit_no"] is None
    assert "residence_permit_no" not in serde.decode(data).record["after"]


def test_a_bad_record_names_its_field_and_is_not_encoded(serde: Serde, subject: str) -> None:
    with pytest.raises(RecordInvalid) as raised:
        serde.encode(change_schema("person"), subject, person_change(name=42))
    assert raised.value.field == "after.name"
    record = person_change()
    del record["authority_version"]
    with pytest.raises(RecordInvalid, match="authority_version: is required"):
        serde.encode(change_schema("person"), subject, record)


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"", EmptyPayload, "empty"),
        (b"\x07\x00\x00\x00\x01\x02", BadMagicByte, "magic byte"),
        (b"\x00\x00\x01", TruncatedPayload, "5-byte header"),
        (b"\x00\x7f\xff\xff\xf0\x02", UnknownSchemaId, "not known"),
    ],
)
def test_bad_bytes_get_a_typed_error(serde: Serde, data: bytes, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        serde.decode(data)


def test_a_truncated_or_padded_body_is_refused(serde: Serde, subject: str) -> None:
    data = serde.encode(change_schema("person"), subject, person_change())
    with pytest.raises(TruncatedPayload):
        serde.decode(data[:-5])
    with pytest.raises(SerdeError, match="bytes left"):
        serde.decode(data + b"\x00\x00")


def test_a_registry_that_is_down_is_unavailable_not_bad_data() -> None:
    dead = Serde(RegistryClient(f"http://127.0.0.1:{free_port()}", timeout=2))
    with pytest.raises(RegistryUnavailable):
        dead.decode(b"\x00\x00\x00\x00\x01\x02")
    with pytest.raises(RegistryUnavailable):
        dead.encode(change_schema("person"), "x-value", person_change())


@pytest.fixture(scope="module")
def sample(serde: Serde, stack: Any) -> bytes:
    return serde.encode(change_schema("person"), "serde-property-value", person_change())


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_random_bytes_only_give_typed_errors(serde: Serde, data: bytes) -> None:
    with contextlib.suppress(SerdeError):
        serde.decode(b"\x00\x00\x00\x00\x01" + data if data[:1] == b"\x01" else data)


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_records_only_give_typed_errors(serde: Serde, sample: bytes, data: st.DataObject) -> None:
    mutated = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(5, len(mutated) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(5, len(mutated)))
    try:
        decoded = serde.decode(bytes(mutated[:cut]))
    except SerdeError:
        return
    assert isinstance(copy.deepcopy(decoded.record), dict)
