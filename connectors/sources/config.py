"""The ``sources:`` section of ``onceonly.yaml``: one entry per source connector, named by the operator.

sources:
  hukou-outbox:                        # the source's name (heartbeats, metrics, logs)
    kind: outbox
    department: public_security
    url: postgresql+psycopg://hukou:${HUKOU_DB_PASSWORD}@db/hukou
    table: outbox                      # id, aggregate_type, aggregate_id, payload, created_at, sent_at
  gjj-export:
    kind: snapshot
    department: market_regulation
    entity_type: enterprise
    input: {kind: csv, path: /exports/enterprises.csv}
    interval: 86400                    # read the export once a day
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from connectors.sinks.config import expand_env
from onceonly.catalog import load_departments
from onceonly.config import load_section
from onceonly.errors import ConfigError

_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceBase(_Strict):
    """What every source shares: who publishes, how often it looks, how it reports and retries."""

    name: str = Field("", description="filled in from the section key")
    department: str = Field(description="the publishing department's code (schemas/departments.yaml)")
    system: str | None = Field(None, description="the department's system of record, for the source block")
    batch_size: int = Field(500, ge=1, le=50_000, description="changes per read and per wait for acknowledgements")
    poll_interval: float = Field(1.0, gt=0, description="seconds between looks when there is nothing to do")
    heartbeat_interval: float = Field(30.0, gt=0, description="the source sends a heartbeat this often")
    retry_backoff_max: float = Field(30.0, gt=0, description="longest wait between retries while the broker is away")
    delivery_timeout: float = Field(30.0, gt=0, description="seconds the producer keeps trying one batch")

    def entity_types(self) -> list[str]:
        """Entity types this source may publish (checked against the department's authority)."""
        return []


class OutboxSourceConfig(SourceBase):
    """Debezium-style outbox rows written by the department's application in its own transactions."""

    kind: Literal["outbox"]
    url: str = Field(description="SQLAlchemy URL: sqlite:///app.db or postgresql+psycopg://user:${PW}@host/db")
    table: str = Field("outbox", pattern=_IDENT)
    db_schema: str | None = Field(None, alias="schema", pattern=_IDENT)
    dead_letter_table: str = Field("outbox_dead_letter", pattern=_IDENT, description="created by the connector")
    aggregate_types: dict[str, str] = Field(
        default_factory=dict, description="aggregate_type -> entity type, when the application's names differ"
    )
    notify_channel: str | None = Field(
        "onceonly_outbox", pattern=_IDENT, description="PostgreSQL LISTEN channel (null: poll only)"
    )
    install_notify_trigger: bool = Field(True, description="create the trigger that NOTIFYs on insert (PostgreSQL)")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("url")
    @classmethod
    def _env(cls, v: str) -> str:
        return expand_env(v)

    def entity_types(self) -> list[str]:
        return sorted(set(self.aggregate_types.values()))


class SqlInput(_Strict):
    kind: Literal["sql"]
    url: str
    table: str | None = Field(None, pattern=_IDENT)
    db_schema: str | None = Field(None, alias="schema", pattern=_IDENT)
    query: str | None = Field(None, description="a SELECT instead of a whole table")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("url")
    @classmethod
    def _env(cls, v: str) -> str:
        return expand_env(v)

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlInput:
        if (self.table is None) == (self.query is None):
            raise ValueError("give either table or query")
        return self


class CsvInput(_Strict):
    kind: Literal["csv"]
    path: Path = Field(description="the export file; a glob (exports/enterprise-*.csv) takes the newest match")
    delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: str = "utf-8-sig"


class SnapshotSourceConfig(SourceBase):
    """A table or export compared with the last snapshot the connector kept."""

    kind: Literal["snapshot"]
    entity_type: str
    input: Annotated[SqlInput | CsvInput, Field(discriminator="kind")]
    key_field: str | None = Field(None, description="entity field holding the key (default: the record's first field)")
    columns: dict[str, str] | None = Field(None, description="source column -> entity field (default: same names)")
    state: Path | None = Field(None, description="SQLite file with the last snapshot (default: <state_dir>/sources)")
    interval: float = Field(60.0, gt=0, description="seconds between reads of the input")
    first_op: Literal["c", "r"] = Field("c", description="op of rows seen on the first run: c (created) or r (read)")
    max_delete_fraction: float = Field(
        0.5, ge=0, le=1, description="refuse a diff deleting more than this share of known rows (a broken export)"
    )

    def entity_types(self) -> list[str]:
        return [self.entity_type]


SourceConfig = Annotated[OutboxSourceConfig | SnapshotSourceConfig, Field(discriminator="kind")]


class SourcesConfig(RootModel[dict[str, SourceConfig]]):
    """Source name -> source."""

    @model_validator(mode="after")
    def _name_and_authority(self) -> SourcesConfig:
        departments = load_departments()
        for name, source in self.root.items():
            source.name = name
            try:
                department = departments.get(source.department)
            except ConfigError as e:
                raise ValueError(f"{name}: {e}") from None
            foreign = [e for e in source.entity_types() if e not in department.authority_for]
            if foreign:
                raise ValueError(
                    f"{name}: {source.department} is not the authority for {', '.join(foreign)} "
                    f"(it is for: {', '.join(department.authority_for) or 'nothing'})"
                )
        return self

    def select(self, name: str | None) -> list[OutboxSourceConfig | SnapshotSourceConfig]:
        if name is None:
            return list(self.root.values())
        if name not in self.root:
            raise ConfigError(f"no source named {name!r}", hint=f"configured: {', '.join(self.root) or 'none'}")
        return [self.root[name]]


def load_sources(path: Path) -> SourcesConfig:
    """The validated ``sources:`` section of ``path``."""
    return load_section(path, "sources", SourcesConfig)
