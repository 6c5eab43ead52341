"""The six demo departments as holders: each its own database, its own table and column names.

A store has a column for exactly what its department's agreement (``schemas/agreements.yaml``) grants, named the
way that department's own system names it (``LAYOUTS``): public security and the provident fund centre use the
pinyin abbreviations of their registration systems, hrss the coded names of its social insurance system, health the
names of its health records system, civil affairs and tax plain English. Only the platform's own bookkeeping columns
(``onceonly_*``) are the same everywhere. Deaths end the person record by the delete policy where the holder keeps
persons, and are a table of their own where it does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.sinks.config import EndMapping, SqlSinkConfig, TableMapping
from services.distributor import Agreement, Agreements
from services.subscriber import SubscriberConfig

HOLDERS = ("public_security", "civil_affairs", "health", "hrss", "housing_fund", "tax")
Layout = dict[str, tuple[str, dict[str, str]]]  # entity type -> (table, {field: column}); a death's columns go
# onto the person table where the holder keeps persons
LAYOUTS: dict[str, Layout] = {
    "public_security": {
        "death": (
            "swdj",
            {"id_number": "gmsfhm", "certificate_no": "swzmbh", "date_of_death": "swrq", "place": "swdd"},
        ),
        "birth": (
            "csdj",
            {
                "certificate_no": "cszmbh",
                "child_name": "xm",
                "sex": "xb",
                "birth_date": "csrq",
                "mother_id_number": "mqgmsfhm",
                "father_id_number": "fqgmsfhm",
                "hospital": "csdd",
            },
        ),
        "marriage": (
            "hydj",
            {
                "registration_no": "djzh",
                "party_a_id_number": "jfgmsfhm",
                "party_b_id_number": "yfgmsfhm",
                "status": "hyzk",
                "registered_on": "djrq",
            },
        ),
        "adoption": (
            "sydj",
            {
                "registration_no": "djzh",
                "child_id_number": "bsyrgmsfhm",
                "adopter_id_numbers": "syrgmsfhm",
                "registered_on": "djrq",
                "status": "syzt",
            },
        ),
    },
    "civil_affairs": {
        "person": (
            "mca_citizen",
            {
                "id_number": "citizen_id",
                "name": "full_name",
                "sex": "gender",
                "birth_date": "date_of_birth",
                "status": "record_status",
            },
        ),
        "death": (
            "mca_citizen",
            {"certificate_no": "death_certificate", "date_of_death": "died_on", "place": "place_of_death"},
        ),
        "birth": (
            "mca_birth_notice",
            {
                "certificate_no": "certificate",
                "child_name": "child",
                "sex": "child_gender",
                "birth_date": "born_on",
                "mother_id_number": "mother_citizen_id",
                "father_id_number": "father_citizen_id",
            },
        ),
    },
    "health": {
        "person": (
            "ehr_resident",
            {
                "id_number": "resident_id_no",
                "name": "resident_name",
                "sex": "sex_code",
                "birth_date": "birth_dt",
                "household_id": "family_no",
                "district_code": "area_code",
            },
        ),
        "household": (
            "ehr_family",
            {
                "household_id": "family_no",
                "head_id_number": "householder_id_no",
                "member_id_numbers": "member_id_nos",
                "district_code": "area_code",
            },
        ),
    },
    "hrss": {
        "person": (
            "ac01",
            {"id_number": "aac002", "name": "aac003", "sex": "aac004", "birth_date": "aac006", "status": "aac008"},
        ),
        "death": ("ac01", {"certificate_no": "aac061", "date_of_death": "aac062"}),
    },
    "housing_fund": {
        "person": ("gjj_zgxx", {"id_number": "sfzhm", "name": "xm", "address": "dz", "status": "zt"}),
        "death": ("gjj_zgxx", {"date_of_death": "swrq"}),
    },
    "tax": {
        "person": (
            "tax_natural_person",
            {
                "id_number": "tin",
                "name": "taxpayer_name",
                "district_code": "tax_district",
                "address": "registered_address",
                "status": "taxpayer_status",
            },
        ),
        "enterprise": (
            "tax_enterprise",
            {
                "uscc": "credit_code",
                "name": "enterprise_name",
                "legal_representative": "legal_rep",
                "address": "registered_address",
                "district_code": "tax_district",
                "status": "enterprise_status",
                "registered_on": "founded_on",
            },
        ),
    },
}
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


def column(holder: str, entity_type: str, field: str) -> str:
    """The holder's column for a field of an entity type (the field's own name where it has no layout)."""
    return LAYOUTS.get(holder, {}).get(entity_type, ("", {}))[1].get(field, field)


def table(holder: str, entity_type: str) -> str:
    """The holder's table for an entity type (``<holder>_<entity type>`` where it has no layout)."""
    return LAYOUTS.get(holder, {}).get(entity_type, (f"{holder}_{entity_type}", {}))[0]


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
            extra = {f: column(holder, "death", f) for f in fields if f not in ("id_number",)}
            tables["death"] = EndMapping(ends="person", key_field="id_number", columns=extra)
            continue
        key = KEY_FIELDS[entity_type]
        tables[entity_type] = TableMapping(
            table=table(holder, entity_type),
            key_column=column(holder, entity_type, key),
            columns={f: column(holder, entity_type, f) for f in fields if f != key},
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
            return sa.Text()  # the SQL sink writes arrays as JSON text (connectors.sinks.sql_steps.coerce)
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
