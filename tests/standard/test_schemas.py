"""The schemas under schemas/: they parse, compose, document every field and match the catalog."""

from __future__ import annotations

from typing import Any

import avro.schema
import fastavro
import pytest

from onceonly.catalog import load_catalog, load_departments
from onceonly.errors import ConfigError
from onceonly.settings import Settings
from onceonly.standard import change_schema, declared_subjects, entity_schema, entity_types, project_change_schema

DEBEZIUM = {"op", "before", "after", "source", "ts_ms"}
PUBLIC_ADMINISTRATION = {
    "event_id", "event_type", "entity_type", "entity_key", "authority", "authority_version",
    "valid_from", "recorded_at", "correction", "supersedes_key", "legal_basis", "restrictions",
}  # fmt: skip


def fields(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in schema["fields"]}


@pytest.mark.parametrize("entity_type", entity_types())
def test_every_change_schema_parses_in_both_avro_libraries(entity_type: str) -> None:
    schema = change_schema(entity_type)
    fastavro.parse_schema(schema)
    avro.schema.parse(__import__("json").dumps(schema))
    assert schema["name"] == entity_schema(entity_type)["name"] + "Change"
    assert set(fields(schema)) >= DEBEZIUM | PUBLIC_ADMINISTRATION


@pytest.mark.parametrize("entity_type", entity_types())
def test_every_entity_field_is_documented_with_its_owner(entity_type: str) -> None:
    entity = entity_schema(entity_type)
    owner = load_departments().authority_of(entity_type).code
    for f in entity["fields"]:
        assert f.get("doc"), f"{entity_type}.{f['name']} has no doc"
        assert f"Owner: {owner}." in f["doc"], f"{entity_type}.{f['name']} does not name its owner {owner}"


def test_every_change_topic_in_the_catalog_has_a_schema_and_vice_versa() -> None:
    catalog = load_catalog()
    declared = {t.entity_type for t in catalog.topics if t.entity_type and not t.per_entity_type}
    assert declared == set(entity_types())


def test_declared_subjects_cover_change_topics_and_receipts() -> None:
    subjects = {d.subject: d for d in declared_subjects(Settings(topic_prefix="x."))}
    assert "x.change.person-value" in subjects
    assert "x.receipts-value" in subjects
    assert all(d.compatibility == "BACKWARD" for d in subjects.values())
    platform = [t for t in load_catalog().topics if t.value_schema and not (t.per_department or t.per_entity_type)]
    assert len(subjects) == len(entity_types()) + len(platform)


def test_a_projection_keeps_only_granted_fields() -> None:
    projected = project_change_schema("person", ["id_number", "name"])
    before = fields(projected)["before"]["type"][1]
    assert [f["name"] for f in before["fields"]] == ["id_number", "name"]
    fastavro.parse_schema(projected)
    with pytest.raises(ConfigError, match="has no field"):
        project_change_schema("person", ["salary"])


def test_an_unknown_entity_type_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown entity type 'spaceship'"):
        change_schema("spaceship")
