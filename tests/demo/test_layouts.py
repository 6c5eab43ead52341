"""Each demo department keeps what its agreement grants in its own table and column names (no broker needed)."""

from __future__ import annotations

from collections import Counter

from connectors.sinks.config import EndMapping, SqlSinkConfig
from onceonly.catalog import schema_dir
from onceonly.demo.holders import HOLDERS, KEY_FIELDS, LAYOUTS, holder_agreement, subscriber_config
from onceonly.standard import entity_schema
from services.distributor import load_agreements

STANDARD = {f["name"] for t in KEY_FIELDS for f in entity_schema(t)["fields"]}  # every field name of the standard


def sinks() -> dict[str, SqlSinkConfig]:
    agreements = load_agreements(schema_dir() / "agreements.yaml")
    out = {}
    for holder in HOLDERS:
        sink = subscriber_config(holder_agreement(agreements, holder), "sqlite://").sink
        assert isinstance(sink, SqlSinkConfig)
        out[holder] = sink
    return out


def test_every_granted_field_has_the_departments_own_column() -> None:
    agreements = load_agreements(schema_dir() / "agreements.yaml")
    for holder in HOLDERS:
        agreement = holder_agreement(agreements, holder)
        for entity_type in agreement.grants:
            fields = set(agreement.fields(entity_type))
            if entity_type == "death" and "person" in agreement.grants:
                fields.discard("id_number")  # the death ends the person row, found by its key
            named = LAYOUTS[holder][entity_type][1]
            assert fields <= set(named), (holder, entity_type, fields - set(named))  # none left to a default name


def test_no_two_departments_share_a_layout() -> None:
    by_holder = sinks()
    tables = Counter(m.table for s in by_holder.values() for m in s.table_mappings().values())
    assert [t for t, n in tables.items() if n > 1] == []
    person_keys = {h: s.table_mappings()["person"].key_column for h, s in by_holder.items() if "person" in s.tables}
    assert len(set(person_keys.values())) == len(person_keys) == 5, person_keys  # id_number named five ways
    for holder, sink in by_holder.items():
        data = [c for m in sink.table_mappings().values() for c in (m.key_column, *m.columns.values())]
        data += [c for m in sink.tables.values() if isinstance(m, EndMapping) for c in m.columns.values()]
        assert not set(data) & STANDARD, (holder, set(data) & STANDARD)  # the standard's names appear nowhere
