"""Sink definitions as they appear under ``subscribers.<dept>.sink`` in ``onceonly.yaml``.

Departments do not share a data model: each mapping says where an entity's fields live in *their* store.
Connection strings and headers may use ``${VAR}`` so passwords and tokens stay in the environment.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_IDENT = r"^[A-Za-z_][A-Za-z0-9_$]*$"

Scalar = str | int | float | bool


def expand_env(value: str) -> str:
    """Replace ``${VAR}`` with the variable's value; an unset variable is an error, not an empty string."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return os.environ[name]

    return _ENV_REF.sub(sub, value)


def _checked_columns(v: dict[str, str]) -> dict[str, str]:
    for field, column in v.items():
        if not re.match(_IDENT, column):
            raise ValueError(f"column name {column!r} for field {field!r} is not a plain identifier")
    if len(set(v.values())) != len(v):
        raise ValueError("two fields map to the same column")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TableMapping(_Strict):
    """Where one entity type lives in a department's database, in the department's own names."""

    table: str = Field(pattern=_IDENT)
    db_schema: str | None = Field(None, alias="schema", pattern=_IDENT)
    key_column: str = Field(pattern=_IDENT, description="holds the entity key; must be the primary key or unique")
    columns: dict[str, str] = Field(description="entity field -> column")
    version_column: str | None = Field(None, pattern=_IDENT, description="also store the authority version here")
    event_id_column: str | None = Field(None, pattern=_IDENT, description="the event that last wrote the row")
    correction_column: str | None = Field(None, pattern=_IDENT, description="true when the row was last corrected")
    deleted_column: str | None = Field(None, pattern=_IDENT, description="delete policy 'mark' writes here")
    deleted_value: Scalar = True
    active_value: Scalar | None = Field(
        None, description="written to deleted_column by every upsert and when a death is retracted, if set"
    )

    @field_validator("columns")
    @classmethod
    def _column_names(cls, v: dict[str, str]) -> dict[str, str]:
        return _checked_columns(v)

    def meta_columns(self) -> list[str]:
        return [c for c in (self.version_column, self.event_id_column, self.correction_column) if c]

    def all_columns(self) -> list[str]:
        extra = [self.deleted_column] if self.deleted_column else []
        return [self.key_column, *self.columns.values(), *self.meta_columns(), *extra]

    @model_validator(mode="after")
    def _distinct(self) -> TableMapping:
        cols = self.all_columns()
        dupes = sorted({c for c in cols if cols.count(c) > 1})
        if dupes:
            raise ValueError(f"columns used twice: {', '.join(dupes)}")
        return self


class EndMapping(_Strict):
    """An entity type whose changes end another entity's record (a death ends a person) by the delete policy.

    A death is its own fact (authority: health), so it gets its own watermark; the record it ends is found by
    ``key_field`` of the death record. Until the death is retracted (its ``op`` d), later changes to that record
    are skipped: a late update from another authority must not bring the person back.
    """

    ends: str = Field(description="the entity type (a key of 'tables') whose record this ends, e.g. person")
    key_field: str | None = Field(None, description="field holding that record's key; default: the entity key")
    columns: dict[str, str] = Field({}, description="entity field -> column of the ended table (mark policy)")
    deleted_value: Scalar | None = Field(None, description="what the mark policy writes; default: the table's")

    @field_validator("columns")
    @classmethod
    def _column_names(cls, v: dict[str, str]) -> dict[str, str]:
        return _checked_columns(v)


def _mapping_kind(value: Any) -> str:
    ends = value.get("ends") if isinstance(value, dict) else getattr(value, "ends", None)
    return "ends" if ends is not None else "table"


Mapping = Annotated[
    Annotated[TableMapping, Tag("table")] | Annotated[EndMapping, Tag("ends")], Discriminator(_mapping_kind)
]
"""A table mapping, or (with ``ends``) what record an entity type's changes end; errors name the one meant."""


class SqlSinkConfig(_Strict):
    """A relational database through SQLAlchemy (SQLite, PostgreSQL, MySQL/MariaDB)."""

    kind: Literal["sql"]
    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://gjj:${GJJ_DB_PASSWORD}@db/gjj")
    tables: dict[str, Mapping] = Field(
        min_length=1, description="entity type -> table mapping, or what record its changes end (deaths)"
    )
    watermark_table: str = Field("onceonly_watermarks", pattern=_IDENT)
    connect_timeout: float = Field(5.0, gt=0, description="seconds for a connection, and for a lock wait")

    @field_validator("url")
    @classmethod
    def _expand_url(cls, v: str) -> str:
        return expand_env(v)

    @model_validator(mode="after")
    def _ends_a_table(self) -> SqlSinkConfig:
        for entity_type, m in self.tables.items():
            if isinstance(m, EndMapping) and not isinstance(self.tables.get(m.ends), TableMapping):
                raise ValueError(f"{entity_type} ends {m.ends!r}, which is not an entity type mapped to a table")
        return self

    def table_mappings(self) -> dict[str, TableMapping]:
        return {e: m for e, m in self.tables.items() if isinstance(m, TableMapping)}

    def end_mappings(self) -> dict[str, EndMapping]:
        return {e: m for e, m in self.tables.items() if isinstance(m, EndMapping)}


class HttpSinkConfig(_Strict):
    """The department's own API: one POST per change, ``Idempotency-Key`` = event id, none for a change the sink's own
    watermarks (``watermark_url``) show the API already has."""

    kind: Literal["http"]
    url: str = Field(description="endpoint; '{entity_type}' is replaced per change")
    headers: dict[str, str] = {}
    fields: dict[str, dict[str, str]] = Field(
        {}, description="entity type -> {entity field -> JSON name}; an entity type not listed is sent as is"
    )
    timeout: float = Field(5.0, gt=0)
    retries: int = Field(3, ge=0, description="quick retries inside one apply before the subscriber pauses")
    backoff: float = Field(0.2, ge=0)
    watermark_url: str | None = Field(
        None,
        description="SQLAlchemy URL of this holder's version watermarks, so stale and repeated changes are not "
        "sent; default sqlite:///<state dir>/subscribers/<topic prefix><dept>.sqlite, shared by the workers of one "
        "machine. "
        "Workers on several machines need one shared database, e.g. postgresql+psycopg://...",
    )
    watermark_table: str = Field("onceonly_watermarks", pattern=_IDENT)

    @field_validator("url")
    @classmethod
    def _expand_url(cls, v: str) -> str:
        return expand_env(v)

    @field_validator("watermark_url")
    @classmethod
    def _watermark_url(cls, v: str | None) -> str | None:
        """A database URL that keeps what it is told: an in-memory one would forget every watermark at exit."""
        if v is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        v = expand_env(v)
        try:
            url = make_url(v)
        except ArgumentError:
            raise ValueError(
                "not a database URL (e.g. sqlite:////var/lib/onceonly/tax.sqlite or postgresql+psycopg://...)"
            ) from None
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError(
                "an in-memory SQLite database forgets the watermarks when the subscriber stops: name a file"
            )
        return v

    @field_validator("headers")
    @classmethod
    def _expand_headers(cls, v: dict[str, str]) -> dict[str, str]:
        return {k: expand_env(x) for k, x in v.items()}


class FileSinkConfig(_Strict):
    """Append-only files for open-data publication and legacy imports (JSON lines or CSV)."""

    kind: Literal["files"]
    path: str = Field(description="file path; '{entity_type}' is replaced, e.g. out/{entity_type}.jsonl")
    format: Literal["jsonl", "csv"] = "jsonl"
    fields: dict[str, dict[str, str]] = Field(
        {}, description="entity type -> {entity field -> column}; required for csv (it fixes the columns)"
    )
    fsync: bool = True

    @model_validator(mode="after")
    def _csv_needs_fields(self) -> FileSinkConfig:
        if self.format == "csv" and not self.fields:
            raise ValueError("csv needs 'fields' (entity type -> {field: column}) to fix its columns")
        if "{entity_type}" not in self.path and len(self.fields) > 1 and self.format == "csv":
            raise ValueError("several entity types in csv need '{entity_type}' in the path")
        return self


SinkConfig = Annotated[SqlSinkConfig | HttpSinkConfig | FileSinkConfig, Field(discriminator="kind")]


def describe(config: Any) -> str:
    """A one-line description without secrets (for logs)."""
    if isinstance(config, SqlSinkConfig):
        from sqlalchemy.engine import make_url

        return f"sql {make_url(config.url).render_as_string(hide_password=True)}"
    if isinstance(config, HttpSinkConfig):
        return f"http {config.url}"
    if isinstance(config, FileSinkConfig):
        return f"files {config.path} ({config.format})"
    return type(config).__name__
