"""The Avro schemas of the data standard, read from ``schemas/avro/``.

A change topic's schema is composed, not copied: ``envelope.avsc`` with the entity record of
``entities/<entity_type>.avsc`` in ``before``/``after``, named ``onceonly.change.<Entity>Change``. One envelope,
eight entities, and no hand-kept copies that could drift apart.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from onceonly.catalog import load_catalog, schema_dir
from onceonly.errors import ConfigError
from onceonly.settings import Settings

Schema = dict[str, Any]
_PLACEHOLDER = "ENTITY"


def read_avsc(path: Path) -> Schema:
    """One ``.avsc`` file as parsed JSON, with the file named in the error when it is not JSON."""
    try:
        schema: Schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"schema file {path} does not exist") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from e
    return schema


def _avro_dir(root: Path | None) -> Path:
    return (root or schema_dir()) / "avro"


def entity_types(root: Path | None = None) -> list[str]:
    """Entity types that have a record schema."""
    return sorted(p.stem for p in (_avro_dir(root) / "entities").glob("*.avsc"))


def entity_schema(entity_type: str, root: Path | None = None) -> Schema:
    path = _avro_dir(root) / "entities" / f"{entity_type}.avsc"
    if not path.is_file():
        known = ", ".join(entity_types(root))
        raise ConfigError(f"unknown entity type {entity_type!r}", hint=f"known: {known}")
    return read_avsc(path)


def compose_change_schema(envelope: Schema, entity: Schema) -> Schema:
    """The envelope with ``entity`` in ``before`` (defined) and ``after`` (referenced by full name)."""
    schema = copy.deepcopy(envelope)
    schema["name"] = f"{entity['name']}Change"
    schema["doc"] = f"A change to one {entity['name']} (see the envelope's doc)."
    full_name = f"{entity.get('namespace', '')}.{entity['name']}".lstrip(".")
    defined = False
    for field in schema["fields"]:
        if field["type"] == ["null", _PLACEHOLDER]:
            field["type"] = ["null", full_name if defined else copy.deepcopy(entity)]
            defined = True
    if not defined:
        raise ConfigError("envelope.avsc has no before/after field typed ['null', 'ENTITY']")
    return schema


@lru_cache(maxsize=64)
def _change_schema_json(entity_type: str, root: Path | None) -> str:
    envelope = read_avsc(_avro_dir(root) / "envelope.avsc")
    return json.dumps(compose_change_schema(envelope, entity_schema(entity_type, root)))


def change_schema(entity_type: str, root: Path | None = None) -> Schema:
    """The value schema of ``change.<entity_type>`` (a fresh copy: callers may keep or change it)."""
    schema: Schema = json.loads(_change_schema_json(entity_type, root or schema_dir()))
    return schema


def platform_schema(file_name: str, root: Path | None = None) -> Schema:
    """A platform record schema, e.g. ``receipt.avsc``."""
    return read_avsc(_avro_dir(root) / file_name)


def project_change_schema(entity_type: str, fields: list[str] | None, root: Path | None = None) -> Schema:
    """The change schema with only ``fields`` of the entity (None: all): what one holder's inbox carries.

    Fields not granted are absent from the schema, not nulled, so they cannot reach the holder at all.
    """
    schema = change_schema(entity_type, root)
    if fields is None:
        return schema
    entity = entity_schema(entity_type, root)
    known = {f["name"] for f in entity["fields"]}
    if unknown := sorted(set(fields) - known):
        raise ConfigError(
            f"{entity_type} has no field(s) {', '.join(unknown)}", hint=f"known: {', '.join(sorted(known))}"
        )
    entity["fields"] = [f for f in entity["fields"] if f["name"] in fields]
    return compose_change_schema(read_avsc(_avro_dir(root) / "envelope.avsc"), entity)


@dataclass(frozen=True)
class DeclaredSubject:
    """A registry subject the catalog declares, with its schema and compatibility mode."""

    subject: str
    schema: Schema
    compatibility: str
    source: str


def subject_for(topic: str) -> str:
    """TopicNameStrategy: the value subject of a topic."""
    return f"{topic}-value"


def declared_subjects(settings: Settings, schemas_dir: Path | None = None) -> list[DeclaredSubject]:
    """Every value subject the catalog declares: change topics and platform topics that name a schema."""
    root = schemas_dir or schema_dir()
    catalog = load_catalog(root / "topics.yaml")
    avro = _avro_dir(root)
    out: list[DeclaredSubject] = []
    for spec in catalog.topics:
        if spec.per_department or spec.per_entity_type:
            continue
        if spec.entity_type:
            schema = change_schema(spec.entity_type, root)
            source = f"{avro / 'envelope.avsc'} + {avro / 'entities' / (spec.entity_type + '.avsc')}"
        elif spec.value_schema:
            schema = platform_schema(spec.value_schema, root)
            source = str(avro / spec.value_schema)
        else:
            continue
        out.append(DeclaredSubject(subject_for(settings.topic(spec.name)), schema, spec.compatibility, source))
    return out
