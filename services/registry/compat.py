"""Schema identity and the seven compatibility modes, decided by Apache ``avro``'s checker and explained in words.

The verdict is always avro's ``ReaderWriterCompatibilityChecker``. Its result merges every problem into unordered
sets (which message belongs to which field is lost), so for the words we walk the two schemas side by side and
ask the same checker about each field: every problem then names its field path, both types and the rule.
Both the registry and the evolution gate (``onceonly schemas check``) use this module, so they cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import fastavro
from avro import compatibility as avro_compat
from avro import schema as avro_schema
from avro.errors import AvroException
from fastavro.schema import SchemaParseException as FastavroParseError

LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
DEFAULT_LEVEL = "BACKWARD"
INCOMPATIBLE = avro_compat.SchemaCompatibilityType.incompatible


class InvalidSchema(ValueError):
    """The text is not an Avro schema this platform can use (the registry answers 42201)."""


def normalize_level(level: object) -> str | None:
    """The level in Confluent's spelling, or None when it is not one of the seven."""
    if not isinstance(level, str):
        return None
    upper = level.strip().upper()
    return upper if upper in LEVELS else None


@dataclass(frozen=True)
class Parsed:
    """A schema parsed once: ``text`` is what the registry stores and serves, ``key`` decides identity."""

    text: str
    key: str
    avro: avro_schema.Schema


def parse(text: str) -> Parsed:
    """Parse with avro (for compatibility) and fastavro (the serde's parser, which also checks defaults).

    Identity is the full parsed JSON with sorted keys, not Parsing Canonical Form: PCF drops ``logicalType``,
    ``default`` and ``doc``, so two schemas that decode differently (``int`` vs ``int``/``date``) would share an id.
    """
    try:
        document = json.loads(text)
    except (TypeError, ValueError) as e:
        raise InvalidSchema(f"not JSON: {e}") from e
    try:
        parsed = avro_schema.parse(json.dumps(document))
        fastavro.parse_schema(document, _write_hint=False)
    except (AvroException, FastavroParseError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise InvalidSchema(str(e) or type(e).__name__) from e
    if isinstance(parsed, avro_schema.UnionSchema) and not parsed.schemas:
        raise InvalidSchema("an empty union has no values")
    normal = parsed.to_json()
    return Parsed(
        text=json.dumps(document, separators=(",", ":")),
        key=json.dumps(normal, sort_keys=True, separators=(",", ":")),
        avro=parsed,
    )


@dataclass(frozen=True)
class Problem:
    """One incompatibility: the rule broken (Confluent's name), where, and what in words."""

    rule: str
    path: str
    detail: str

    def words(self, reader: str, writer: str) -> str:
        """E.g. ``x.P.a: type int in the new schema, string in version 1, so the new schema cannot read ...``."""
        detail = self.detail.replace("{reader}", reader).replace("{writer}", writer)
        return f"{self.path}: {detail}, so {reader} cannot read data written with {writer} [{self.rule}]"


def describe(s: avro_schema.Schema) -> str:
    """A type in a few characters: ``string``, ``int (date)``, ``array<long>``, ``union[null, string]``."""
    if isinstance(s, avro_schema.UnionSchema):
        return "union[" + ", ".join(describe(b) for b in s.schemas) + "]"
    if isinstance(s, avro_schema.ArraySchema):
        return f"array<{describe(s.items)}>"
    if isinstance(s, avro_schema.MapSchema):
        return f"map<{describe(s.values)}>"
    if isinstance(s, avro_schema.NamedSchema):
        return f"{s.type} {s.fullname}"
    logical = s.get_prop("logicalType")
    return f"{s.type} ({logical})" if logical else str(s.type)


class _Explainer:
    """Walks reader and writer together, asking avro's checker about each part, to name each problem."""

    def __init__(self) -> None:
        self.checker: Any = cast(Any, avro_compat.ReaderWriterCompatibilityChecker)()
        self.active: set[tuple[int, int]] = set()  # pairs being explained: a recursive type stops here

    def verdict(self, reader: avro_schema.Schema, writer: avro_schema.Schema) -> Any:
        return self.checker.get_compatibility(reader, writer)

    def explain(self, reader: avro_schema.Schema, writer: avro_schema.Schema, path: str) -> list[Problem]:
        pair = (id(reader), id(writer))
        result = self.verdict(reader, writer)
        if result.compatibility is not INCOMPATIBLE or pair in self.active:
            return []
        self.active.add(pair)
        try:
            return self._explain(result, reader, writer, path)
        finally:
            self.active.discard(pair)

    def _explain(self, result: Any, reader: avro_schema.Schema, writer: avro_schema.Schema, path: str) -> list[Problem]:
        if isinstance(reader, avro_schema.RecordSchema) and isinstance(writer, avro_schema.RecordSchema):
            return self._records(reader, writer, path) or self._leaf(result, reader, writer, path)
        if isinstance(reader, avro_schema.ArraySchema) and isinstance(writer, avro_schema.ArraySchema):
            return self.explain(reader.items, writer.items, f"{path}[]")
        if isinstance(reader, avro_schema.MapSchema) and isinstance(writer, avro_schema.MapSchema):
            return self.explain(reader.values, writer.values, f"{path}{{}}")
        if isinstance(writer, avro_schema.UnionSchema):
            out: list[Problem] = []
            for branch in writer.schemas:
                if self.verdict(reader, branch).compatibility is not INCOMPATIBLE:
                    continue
                if isinstance(reader, avro_schema.UnionSchema):
                    out.extend(self._into_union(reader, branch, path))
                else:
                    out.extend(self.explain(reader, branch, path))
            return out or self._leaf(result, reader, writer, path)
        if isinstance(reader, avro_schema.UnionSchema):
            return self._into_union(reader, writer, path)
        return self._leaf(result, reader, writer, path)

    def _into_union(self, reader: avro_schema.UnionSchema, writer: avro_schema.Schema, path: str) -> list[Problem]:
        """No branch of the reader's union reads ``writer``: explain the branch meant for it, if there is one.

        E.g. ``["null", Person]`` reading a changed ``Person``: the problem is inside Person, not a missing branch.
        """
        meant = [
            b
            for b in reader.schemas
            if b.type == writer.type
            and (
                not isinstance(b, avro_schema.NamedSchema)
                or (isinstance(writer, avro_schema.NamedSchema) and avro_compat.schema_name_equals(b, writer))
            )
        ]
        if len(meant) == 1:
            if (id(meant[0]), id(writer)) in self.active:
                return []  # a recursive type: explained further up
            if inside := self.explain(meant[0], writer, path):
                return inside
        detail = f"{describe(reader)} in {{reader}} has no branch for {describe(writer)}"
        return [Problem("MISSING_UNION_BRANCH", path, detail)]

    def _records(self, reader: avro_schema.RecordSchema, writer: avro_schema.RecordSchema, path: str) -> list[Problem]:
        out: list[Problem] = []
        if not avro_compat.schema_name_equals(reader, writer):
            detail = f"named {reader.fullname} in {{reader}}, {writer.fullname} in {{writer}}"
            out.append(Problem("NAME_MISMATCH", path, detail))
        for field in reader.fields:
            at = f"{path}.{field.name}"
            found = avro_compat.lookup_writer_field(writer_schema=writer, reader_field=field)
            if found is not None:
                out.extend(self.explain(field.type, found.type, at))
            elif not field.has_default:
                if isinstance(field.type, avro_schema.EnumSchema) and field.type.props.get("default"):
                    out.extend(self.explain(field.type, writer, at))  # avro's own rule for enum-typed fields
                else:
                    detail = f"a field of type {describe(field.type)} with no default, absent in {{writer}}"
                    out.append(Problem("READER_FIELD_MISSING_DEFAULT_VALUE", at, detail))
        return out

    @staticmethod
    def _leaf(result: Any, reader: avro_schema.Schema, writer: avro_schema.Schema, path: str) -> list[Problem]:
        out: list[Problem] = []
        kinds = avro_compat.SchemaIncompatibilityType
        for kind in dict.fromkeys(result.incompatibilities):
            if kind is kinds.type_mismatch:
                detail = f"type {describe(reader)} in {{reader}}, {describe(writer)} in {{writer}}"
            elif kind is kinds.name_mismatch and isinstance(reader, avro_schema.NamedSchema):
                detail = f"named {reader.fullname} in {{reader}}, {cast(Any, writer).fullname} in {{writer}}"
            elif kind is kinds.missing_enum_symbols and isinstance(reader, avro_schema.EnumSchema):
                missing = sorted(set(cast(Any, writer).symbols) - set(reader.symbols))
                detail = f"{describe(reader)} in {{reader}} lacks symbol(s) {', '.join(missing)}"
            elif kind is kinds.fixed_size_mismatch and isinstance(reader, avro_schema.FixedSchema):
                detail = f"fixed size {reader.size} in {{reader}}, {cast(Any, writer).size} in {{writer}}"
            elif kind is kinds.missing_union_branch:
                detail = f"{describe(reader)} in {{reader}} has no branch for {describe(writer)}"
            else:
                detail = "; ".join(sorted(result.messages))
            out.append(Problem(kind.name.upper(), path, detail))
        if not out:  # avro said incompatible without naming a kind: keep its own words
            out.append(Problem("INCOMPATIBLE", path, "; ".join(sorted(result.messages)) or "incompatible"))
        return out


def problems(reader: avro_schema.Schema, writer: avro_schema.Schema) -> list[Problem]:
    """Why ``reader`` cannot read what ``writer`` wrote (empty: it can)."""
    root = reader.fullname if isinstance(reader, avro_schema.NamedSchema) else "(top level)"
    return _Explainer().explain(reader, writer, root)


def check(level: str, new: Parsed, previous: Sequence[tuple[str, Parsed]]) -> list[str]:
    """Incompatibilities of ``new`` with ``previous`` (oldest first, each with a label) under ``level``, in words.

    BACKWARD: the new schema reads data written with the latest one; FORWARD: the latest reads the new one's data;
    FULL: both. ``_TRANSITIVE`` checks against every previous version instead of the latest only.
    """
    if level == "NONE" or not previous:
        return []
    against = previous if level.endswith("_TRANSITIVE") else previous[-1:]
    out: list[str] = []
    for label, old in against:
        if level.startswith(("BACKWARD", "FULL")):
            out += [p.words("the new schema", label) for p in problems(new.avro, old.avro)]
        if level.startswith(("FORWARD", "FULL")):
            out += [p.words(label, "the new schema") for p in problems(old.avro, new.avro)]
    return out
