"""The reviewed data-standard files under ``schemas/``: departments and the topic catalog."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

import onceonly
from onceonly.config import read_yaml
from onceonly.errors import ConfigError


def schema_dir() -> Path:
    """``schemas/`` of a checkout, or the copy shipped in the wheel (``onceonly/schemas``)."""
    override = os.environ.get("ONCEONLY_SCHEMA_DIR")
    if override:
        return Path(override)
    package = Path(onceonly.__file__).resolve().parent
    for candidate in (package / "schemas", package.parent / "schemas"):
        if (candidate / "topics.yaml").is_file():
            return candidate
    raise ConfigError("cannot find the schemas folder", hint="set ONCEONLY_SCHEMA_DIR")


class Department(BaseModel):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    authority_for: list[str] = []


Compatibility = Literal[
    "NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"
]


class TopicSpec(BaseModel):
    """One catalog entry; a template when it is per department or per entity type."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    owner: str
    key: str
    entity_type: str | None = None
    partitions: int | None = Field(None, ge=1)
    replication_factor: int | None = Field(None, ge=1)
    retention_ms: int = -1
    cleanup_policy: Literal["delete", "compact"] = "delete"
    per_department: bool = False
    per_entity_type: bool = False
    compatibility: Compatibility = "BACKWARD"
    value_schema: str | None = None  # a file under schemas/avro/ for platform topics; change topics derive theirs
    doc: str = ""

    @model_validator(mode="after")
    def _one_template(self) -> TopicSpec:
        if self.per_department and self.per_entity_type:
            raise ValueError("a topic is per department or per entity type, not both")
        return self


class ConcreteTopic(BaseModel):
    """A topic as it should exist on the cluster (prefix not yet applied)."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]
    owner: str
    key: str
    entity_type: str | None = None


class Catalog(BaseModel):
    defaults: dict[str, int] = {"partitions": 3, "replication_factor": 1}
    topics: list[TopicSpec]

    def change_topic(self, entity_type: str) -> str:
        for t in self.topics:
            if t.entity_type == entity_type and not t.per_entity_type:
                return t.name
        raise ConfigError(f"no change topic for entity type {entity_type!r} in the catalog")

    @property
    def entity_types(self) -> list[str]:
        return [t.entity_type for t in self.topics if t.entity_type and not t.per_entity_type]

    def concrete(self, departments: list[str]) -> list[ConcreteTopic]:
        """Expand templates into the topics that must exist for these departments."""
        out: list[ConcreteTopic] = []
        for spec in self.topics:
            names: list[tuple[str, str | None]]
            if spec.per_department:
                names = [(f"{spec.name}.{d}", None) for d in departments]
            elif spec.per_entity_type:
                names = [(f"{spec.name}.{e}", e) for e in self.entity_types]
            else:
                names = [(spec.name, spec.entity_type)]
            for name, entity in names:
                out.append(
                    ConcreteTopic(
                        name=name,
                        partitions=spec.partitions or self.defaults.get("partitions", 3),
                        replication_factor=spec.replication_factor or self.defaults.get("replication_factor", 1),
                        config={"retention.ms": str(spec.retention_ms), "cleanup.policy": spec.cleanup_policy},
                        owner=spec.owner,
                        key=spec.key,
                        entity_type=entity,
                    )
                )
        return out


def _validation_message(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{path}: {where}: {first['msg']}"


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or schema_dir() / "topics.yaml"
    try:
        return Catalog.model_validate(read_yaml(path))
    except ValidationError as e:
        raise ConfigError(_validation_message(path, e)) from e


class DepartmentRegistry(BaseModel):
    departments: list[Department]

    def codes(self) -> list[str]:
        return [d.code for d in self.departments]

    def get(self, code: str) -> Department:
        for d in self.departments:
            if d.code == code:
                return d
        known = ", ".join(self.codes())
        raise ConfigError(f"unknown department {code!r}", hint=f"known: {known}")

    def authority_of(self, entity_type: str) -> Department:
        for d in self.departments:
            if entity_type in d.authority_for:
                return d
        raise ConfigError(f"no department is the authority for entity type {entity_type!r}")


@lru_cache(maxsize=4)
def load_departments(path: Path | None = None) -> DepartmentRegistry:
    path = path or schema_dir() / "departments.yaml"
    try:
        return DepartmentRegistry.model_validate(read_yaml(path))
    except ValidationError as e:
        raise ConfigError(_validation_message(path, e)) from e
