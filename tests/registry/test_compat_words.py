"""Incompatibilities in words: each names the field path, both types and the rule, wherever the field sits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.registry.compat import InvalidSchema, check, parse


def rec(name: str, *fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "w", "fields": list(fields)}


def words(level: str, new: Any, old: Any) -> list[str]:
    return check(level, parse(json.dumps(new)), [("version 1", parse(json.dumps(old)))])


def test_type_change_inside_a_nullable_record_names_the_path_and_both_types() -> None:
    old = rec("Env", {"name": "after", "type": ["null", rec("Person", {"name": "age", "type": "string"})]})
    new = rec("Env", {"name": "after", "type": ["null", rec("Person", {"name": "age", "type": "int"})]})
    [backward] = words("BACKWARD", new, old)
    assert backward.startswith("w.Env.after.age: type int in the new schema, string in version 1")
    assert backward.endswith("[TYPE_MISMATCH]")


def test_enum_array_map_and_logical_types() -> None:
    enum = {"type": "enum", "name": "Sex", "symbols": ["M", "F", "U"]}
    old = rec(
        "P",
        {"name": "sex", "type": enum},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "born", "type": {"type": "int", "logicalType": "date"}},
    )
    new = rec(
        "P",
        {"name": "sex", "type": {**enum, "symbols": ["M", "F"]}},
        {"name": "tags", "type": {"type": "array", "items": "int"}},
        {"name": "born", "type": "string"},
    )
    got = words("BACKWARD", new, old)
    assert any(w.startswith("w.P.sex: enum w.Sex in the new schema lacks symbol(s) U") for w in got)
    assert any(w.startswith("w.P.tags[]: type int in the new schema, string in version 1") for w in got)
    assert any(w.startswith("w.P.born: type string in the new schema, int (date) in version 1") for w in got)
    assert len(got) == 3


def test_recursive_types_are_explained_once() -> None:
    def node(*extra: dict[str, Any]) -> dict[str, Any]:
        return rec("Node", {"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"]}, *extra)

    assert words("FULL", node({"name": "w", "type": "string"}), node()) == [
        "w.Node.w: a field of type string with no default, absent in version 1, so the new schema cannot read data "
        "written with version 1 [READER_FIELD_MISSING_DEFAULT_VALUE]"
    ]


@pytest.mark.parametrize(
    "text",
    ['{"type": "record"', '"nosuchtype"', "[]", '{"type": "record", "name": "X", "fields": [{"name": "a"}]}'],
)
def test_invalid_schemas(text: str) -> None:
    with pytest.raises(InvalidSchema):
        parse(text)
