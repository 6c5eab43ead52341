"""The ``subscribers:`` section of ``onceonly.yaml``: one entry per department that holds data.

subscribers:
  housing_fund:                      # department code (schemas/departments.yaml)
    source_topic: inbox.housing_fund # default; change topics ([change.person, change.death]) until the distributor runs
    engine: faust                    # faust (an agent of a faust-streaming app) | loop (a confluent-kafka loop)
    delete_policy: mark              # mark | delete: what a delete or a death does to the holder's record
    batch_size: 500                  # changes per poll and per database transaction
    sink:
      kind: sql
      url: postgresql+psycopg://gjj:${GJJ_DB_PASSWORD}@db/gjj
      tables:
        person: {table: gjj_grxx, key_column: sfzhm, columns: {name: xm, address: dz}, version_column: bbh,
                 deleted_column: zt, deleted_value: cancelled, active_value: normal}
        death: {ends: person, key_field: id_number, columns: {date_of_death: swrq}, deleted_value: deceased}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from connectors.sinks import DeletePolicy, HttpSinkConfig, SinkConfig, SqlSinkConfig
from onceonly.catalog import load_departments
from onceonly.config import load_section
from onceonly.errors import ConfigError


class SubscriberConfig(BaseModel):
    """How one department's subscriber reads, applies and recovers."""

    model_config = ConfigDict(extra="forbid")

    department: str = Field("", description="filled in from the section key")
    source_topic: str | list[str] | None = Field(None, description="catalog topic name(s); default inbox.<dept>")
    group_id: str | None = Field(None, description="consumer group; default subscriber.<dept>")
    sink: SinkConfig
    engine: Literal["faust", "loop"] = Field(
        "faust",
        description="faust: an agent of a faust-streaming app; loop: a plain confluent-kafka consumer loop (the same "
        "decisions, guarantees and receipts; about twice the applies per CPU second, README Performance)",
    )
    delete_policy: DeletePolicy = "mark"
    batch_size: int = Field(500, ge=1, le=50_000)
    retry_backoff_max: float = Field(10.0, gt=0, description="seconds between retries while the sink is down, at most")
    shutdown_grace: float = Field(8.0, gt=0, le=60, description="seconds a stopping worker may take before it is cut")

    @property
    def topics(self) -> list[str]:
        """Catalog names (the deployment's prefix is not applied yet)."""
        if self.source_topic is None:
            return [f"inbox.{self.department}"]
        return [self.source_topic] if isinstance(self.source_topic, str) else list(self.source_topic)

    @property
    def group(self) -> str:
        return self.group_id or f"subscriber.{self.department}"

    @model_validator(mode="after")
    def _mark_needs_a_column(self) -> SubscriberConfig:
        if self.delete_policy == "mark" and isinstance(self.sink, SqlSinkConfig):
            unmarked = [e for e, m in self.sink.table_mappings().items() if m.deleted_column is None]
            if unmarked:
                raise ValueError(f"delete_policy 'mark' needs deleted_column for: {', '.join(unmarked)}")
        return self


class SubscribersConfig(RootModel[dict[str, SubscriberConfig]]):
    """Department code -> subscriber."""

    @model_validator(mode="after")
    def _department_from_key(self) -> SubscribersConfig:
        for code, sub in self.root.items():
            if sub.department and sub.department != code:
                raise ValueError(f"entry {code!r} says department {sub.department!r}")
            sub.department = code
        return self

    @model_validator(mode="after")
    def _own_watermarks(self) -> SubscribersConfig:
        """Watermark rows carry no holder: an http sink sharing a watermark table with another holder would skip
        that holder's changes as its own."""
        seen: dict[tuple[str, str], tuple[str, bool]] = {}
        for code, sub in self.root.items():
            sink, http = sub.sink, isinstance(sub.sink, HttpSinkConfig)
            if isinstance(sink, HttpSinkConfig) and sink.watermark_url:
                place = (sink.watermark_url, sink.watermark_table)
            elif isinstance(sink, SqlSinkConfig):
                place = (sink.url, sink.watermark_table)
            else:
                continue
            other, other_http = seen.setdefault(place, (code, http))
            if other != code and (http or other_http):
                raise ValueError(
                    f"{other} and {code} keep their watermarks in the same table ({place[1]}) of the same "
                    "database: give one of them its own watermark_table"
                )
        return self

    def select(self, department: str | None) -> list[SubscriberConfig]:
        """One department, or all of them."""
        if department is None:
            return list(self.root.values())
        if department not in self.root:
            known = ", ".join(self.root) or "none"
            raise ConfigError(f"no subscriber configured for department {department!r}", hint=f"configured: {known}")
        return [self.root[department]]


def load_subscribers(path: Path, *, departments_file: Path | None = None) -> SubscribersConfig:
    """Read and check ``subscribers:``; every key must be a department of the registry."""
    config = load_section(path, "subscribers", SubscribersConfig)
    if not config.root:
        raise ConfigError(f"{path}: the 'subscribers' section is empty")
    registry = load_departments(departments_file)
    for code in config.root:
        registry.get(code)
    return config
