"""Two real client libraries against our registry: confluent-kafka's (with its Avro serde) and
python-schema-registry-client, plus our own serde reading confluent's bytes and the other way round."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from registry_helpers import RegistryProcess, record
from schema_registry.client import SchemaRegistryClient as PsrClient
from schema_registry.client.errors import ClientError

from onceonly.standard import RegistryClient, Serde

pytestmark = pytest.mark.broker


def names(ns: str) -> tuple[str, str]:
    v1 = record("Person", {"name": "name", "type": "string"}, {"name": "age", "type": "int"}, namespace=ns)
    v2 = record(
        "Person",
        {"name": "name", "type": "string"},
        {"name": "age", "type": "int"},
        {"name": "city", "type": ["null", "string"], "default": None},
        namespace=ns,
    )
    return v1, v2


def test_confluent_client_registers_reads_and_checks(registry: RegistryProcess) -> None:
    ns = f"c{uuid.uuid4().hex[:8]}"
    subject = f"{ns}.person-value"
    v1, v2 = names(ns)
    client = SchemaRegistryClient({"url": registry.url})
    schema_id = client.register_schema(subject, Schema(v1, "AVRO"))
    assert schema_id >= 1
    assert client.register_schema(subject, Schema(v1, "AVRO")) == schema_id
    assert json.loads(client.get_schema(schema_id).schema_str) == json.loads(v1)
    assert client.lookup_schema(subject, Schema(v1, "AVRO")).version == 1
    assert subject in client.get_subjects()

    client.set_compatibility(subject, "FULL")
    assert client.get_compatibility(subject) == "FULL"
    assert client.test_compatibility(subject, Schema(v2, "AVRO")) is True
    required = record("Person", {"name": "name", "type": "string"}, {"name": "zip", "type": "string"}, namespace=ns)
    assert client.test_compatibility(subject, Schema(required, "AVRO")) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, Schema(required, "AVRO"))
    assert refused.value.http_status_code == 409 and refused.value.error_code == 409

    id2 = client.register_schema(subject, Schema(v2, "AVRO"))
    latest = client.get_latest_version(subject)
    assert (latest.schema_id, latest.version) == (id2, 2)
    assert client.get_versions(subject) == [1, 2]
    with pytest.raises(SchemaRegistryError) as missing:
        client.get_schema(10_000_000)
    assert missing.value.error_code == 40403
    assert client.delete_subject(subject) == [1, 2]
    assert client.delete_subject(subject, permanent=True) == [1, 2]
    assert subject not in client.get_subjects()


def test_confluent_serde_round_trip_and_ours_reads_it(registry: RegistryProcess) -> None:
    """confluent's AvroSerializer -> its AvroDeserializer and our Serde; our Serde -> its AvroDeserializer."""
    ns = f"d{uuid.uuid4().hex[:8]}"
    topic = f"{ns}.person"
    v1, v2 = names(ns)
    client = SchemaRegistryClient({"url": registry.url})
    ctx = SerializationContext(topic, MessageField.VALUE)
    person = {"name": "Li Wei", "age": 41}

    framed = AvroSerializer(client, v1)(person, ctx)
    assert framed is not None and framed[0] == 0
    assert AvroDeserializer(client)(framed, ctx) == person

    ours = Serde(RegistryClient(registry.url))
    decoded = ours.decode(framed)
    assert decoded.record == person
    assert decoded.schema_id == int.from_bytes(framed[1:5], "big")
    assert ours.decode(framed, json.loads(v2)).record == {**person, "city": None}  # an older writer resolves

    newer = {"name": "Wang Fang", "age": 33, "city": "Hangzhou"}
    encoded = ours.encode(json.loads(v2), f"{topic}-value", newer)
    assert AvroDeserializer(client)(encoded, ctx) == newer
    assert AvroDeserializer(client, v1)(encoded, ctx) == {"name": "Wang Fang", "age": 33}


def test_python_schema_registry_client(registry: RegistryProcess) -> None:
    ns = f"p{uuid.uuid4().hex[:8]}"
    subject = f"{ns}.person-value"
    v1, v2 = names(ns)
    client = PsrClient(url=registry.url)
    schema_id = client.register(subject, json.loads(v1))
    assert client.register(subject, json.loads(v1)) == schema_id
    fetched = client.get_by_id(schema_id)
    assert fetched is not None and fetched.raw_schema["name"] == "Person"
    assert client.get_by_id(10_000_000) is None
    found = client.check_version(subject, json.loads(v1))
    assert found is not None and (found.schema_id, found.version) == (schema_id, 1)
    assert client.get_compatibility() == "BACKWARD"  # the global level, asked as "config/"
    assert client.update_compatibility("FORWARD", subject) is True
    assert client.get_compatibility(subject) == "FORWARD"
    verbose = client.test_compatibility(subject, json.loads(v2), verbose=True)
    assert isinstance(verbose, dict) and verbose["is_compatible"] is True
    dropped_age = record("Person", {"name": "name", "type": "string"}, namespace=ns)
    assert client.test_compatibility(subject, json.loads(dropped_age)) is False
    with pytest.raises(ClientError) as refused:
        client.register(subject, json.loads(dropped_age))
    assert refused.value.http_code == 409
    id2 = client.register(subject, json.loads(v2))
    latest = client.get_schema(subject)
    assert latest is not None and (latest.schema_id, latest.version) == (id2, 2)
    assert client.get_versions(subject) == [1, 2]
    assert client.get_schema_subject_versions(id2)[0].version == 2  # type: ignore[index]
    assert client.delete_version(subject, 1) == 1
    assert client.delete_subject(subject) == [2]
