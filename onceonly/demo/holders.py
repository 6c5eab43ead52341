"""The six demo departments as holders: each its own database, its own table and column names.

Layouts are derived from the reference agreements (``schemas/agreements.yaml``) so a store has a column for
exactly what its agreement grants, named in the department's own way (the provident fund centre uses the
pinyin abbreviations of its legacy system). Deaths end the person record by the delete policy where the holder
keeps persons, and are a table of their own where it does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.sinks.config import EndMapping, SqlSinkConfig, TableMapping
from services.distributor import Agreement, Agreements
from services.subscriber import SubscriberConfig

HOLDERS = ("public_security", "civil_affairs", "health", "hrss", "housing_fund", "tax")
TABLE_PREFIX = {
    "public_security": "hj_",
    "civil_affairs": "mz_",
    "health": "wj_",
    "hrss": "rs_",
    "housing_fund": "gjj_",
    "tax": "sw_",
}
RENAMES = {"housing_fund": {"id_number": "sfzhm", "name": "xm", "address": "dz", "status": "zt"}}
KEY_FIELDS = {
    "person": "id_number",
    "household": "household_id",
    "marriage": "registration_no",
    "adoption": "registration_no",
    "birth": "certificate_no",
    "death": "id_number",
    "pension": "id_number",
    "enterprise": "uscc",
}
DELETED_COLUMN = "onceonly_deleted"


def column(holder: str, field: str) -> str:
    return RENAMES.get(holder, {}).get(field, field)


def table(holder: str, entity_type: str) -> str:
    return TABLE_PREFIX[holder] + entity_type


def holder_agreement(agreements: Agreements, holder: str) -> Agreement:
    mine = [a for a in agreements if a.holder == holder]
    if len(mine) != 1:
        raise ValueError(f"the demo expects one agreement for {holder}, found {len(mine)}")
    return mine[0]


def sink_tables(agreement: Agreement) -> dict[str, TableMapping | EndMapping]:
    """Entity type -> where it lives in this holder's store."""
    holder = agreement.holder
    tables: dict[str, TableMapping | EndMapping] = {}
    for entity_type in agreement.grants:
        fields = agreement.fields(entity_type)
        if entity_type == "death" and "person" in agreement.grants:
            extra = {f: column(holder, f) for f in fields if f not in ("id_number",)}
            tables["death"] = EndMapping(ends="person", key_field="id_number", columns=extra)
            continue
        key = KEY_FIELDS[entity_type]
        tables[entity_type] = TableMapping(
            table=table(holder, entity_type),
            key_column=column(holder, key) if key in fields else key,
            columns={f: column(holder, f) for f in fields if f != key},
            version_column="onceonly_version",
            event_id_column="onceonly_event_id",
            correction_column="onceonly_corrected",
            deleted_column=DELETED_COLUMN,
            deleted_value=True,
            active_value=False,
        )
    return tables


def death_columns(agreement: Agreement) -> dict[str, str]:
    """Columns a death writes onto the person row, for holders that keep persons."""
    end = sink_tables(agreement).get("death")
    return dict(end.columns) if isinstance(end, EndMapping) else {}


def subscriber_config(agreement: Agreement, store: str, batch_size: int = 1000) -> SubscriberConfig:
    sink: Any = SqlSinkConfig(kind="sql", url=store, tables=sink_tables(agreement))
    return SubscriberConfig(department=agreement.holder, sink=sink, delete_policy="mark", batch_size=batch_size)


def sqlite_store(folder: Path, holder: str) -> str:
    return f"sqlite:///{folder / f'{holder}.db'}"


def _sql_type(avro_type: Any) -> Any:
    """A column type for an entity field's Avro type (the demo creates the departments' tables)."""
    import sqlalchemy as sa

    if isinstance(avro_type, list):
        avro_type = next(t for t in avro_type if t != "null")
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "date":
            return sa.Date()
        if avro_type.get("type") == "array":
            return sa.JSON()
        avro_type = avro_type.get("type")
    return {"long": sa.BigInteger(), "int": sa.Integer(), "boolean": sa.Boolean()}.get(str(avro_type), sa.Text())


def create_store(url: str, config: SqlSinkConfig) -> None:
    """Create a holder's tables as its own system would have them: one row per entity, its own names."""
    import sqlalchemy as sa

    from onceonly.standard import entity_schema

    metadata = sa.MetaData()
    ends = config.end_mappings()
    for entity_type, m in config.table_mappings().items():
        types = {f["name"]: f["type"] for f in entity_schema(entity_type)["fields"]}
        death_fields = {f["name"]: f["type"] for f in entity_schema("death")["fields"]}
        cols: list[sa.Column[Any]] = [sa.Column(m.key_column, sa.String(64), primary_key=True)]
        cols += [sa.Column(c, _sql_type(types[f])) for f, c in m.columns.items()]
        for end in ends.values():
            if end.ends == entity_type:
                cols += [sa.Column(c, _sql_type(death_fields[f])) for f, c in end.columns.items()]
        cols += [
            sa.Column("onceonly_version", sa.BigInteger()),
            sa.Column("onceonly_event_id", sa.String(64)),
            sa.Column("onceonly_corrected", sa.Boolean()),
            sa.Column(DELETED_COLUMN, sa.Boolean()),
        ]
        sa.Table(m.table, metadata, *cols)
    engine = sa.create_engine(url)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
    finally:
        engine.dispose()
