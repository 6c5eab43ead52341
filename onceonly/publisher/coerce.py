"""Turn JSON-ish values (an outbox payload, an HTTP body, a CSV cell) into the Python values Avro expects.

Every source receives text: dates as ``"1949-12-31"``, timestamps as ISO strings, numbers in CSV cells as
strings. Converting by walking the change schema keeps that knowledge in one place, and it refuses fields the
schema does not have (fastavro would silently drop a misspelt ``adress``), naming the field either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import fastavro

from onceonly.standard import RecordInvalid

Schema = dict[str, Any]
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_expanded: dict[int, tuple[Schema, Any]] = {}


def expand(schema: Schema) -> Any:
    """The schema with every named type written out in place, so a walk never has to resolve a name.

    Cached per schema object, as the serde caches its writers: callers keep one schema dict per entity type.
    """
    entry = _expanded.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = (schema, fastavro.parse_schema(schema, expand=True))
        _expanded[id(schema)] = entry  # keeps ``schema`` alive so its id() is not reused
    return entry[1]


def to_millis(value: datetime | date) -> int:
    """Epoch milliseconds; a naive datetime is taken as UTC (what SQLite's CURRENT_TIMESTAMP writes)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(milliseconds=1)


class _Bad(Exception):
    """A value that does not fit; ``path`` is filled in on the way out of the records it sits in."""

    def __init__(self, reason: str, path: list[str] | None = None) -> None:
        self.reason = reason
        self.path = path or []


Convert = Callable[[Any], Any]


class Coercer:
    """Converts values for a schema, through converters compiled once per schema (the hot path of every source).

    ``empty_is_null`` reads ``""`` in a nullable field as null (CSV cells); ``numbers_as_text`` accepts a number
    where the schema wants text (legacy tables keep district codes in integer columns).
    """

    def __init__(self, *, empty_is_null: bool = False, numbers_as_text: bool = False) -> None:
        self.empty_is_null = empty_is_null
        self.numbers_as_text = numbers_as_text
        self._compiled: dict[int, tuple[Any, Convert]] = {}

    def record(self, schema: Any, value: Any, path: str) -> dict[str, Any]:
        """``value`` converted for the (expanded) record ``schema``; ``RecordInvalid`` names ``path.field``."""
        return self.value(schema, value, path)  # type: ignore[no-any-return]

    def value(self, schema: Any, value: Any, path: str) -> Any:
        entry = self._compiled.get(id(schema))
        if entry is None or entry[0] is not schema:
            entry = (schema, self._compile(schema))
            self._compiled[id(schema)] = entry
        try:
            return entry[1](value)
        except _Bad as e:
            raise RecordInvalid(_join([path, *e.path] if path else e.path), e.reason) from None

    def _compile(self, schema: Any) -> Convert:
        if isinstance(schema, list):
            return self._union(schema)
        if isinstance(schema, str):
            return self._primitive(schema, None)
        kind = schema["type"]
        if kind == "record":
            return self._record(schema)
        if kind == "array":
            return self._array(schema)
        if kind == "map":
            return self._map(schema)
        if kind == "enum":
            return _enum(schema["symbols"])
        return self._primitive(kind, schema.get("logicalType"))

    def _record(self, schema: Any) -> Convert:
        fields = {f["name"]: self._compile(f["type"]) for f in schema["fields"]}
        name = schema["name"].rsplit(".", 1)[-1]

        def record(value: Any) -> dict[str, Any]:
            if not isinstance(value, Mapping):
                raise _Bad(f"expected an object, got {type(value).__name__}")
            out: dict[str, Any] = {}
            for key, item in value.items():
                convert = fields.get(key)
                if convert is None:
                    raise _Bad(f"is not a field of {name}", [key])
                try:
                    out[key] = convert(item)
                except _Bad as e:
                    e.path.insert(0, key)
                    raise
            return out

        return record

    def _union(self, branches: list[Any]) -> Convert:
        nullable = "null" in branches
        others = [self._compile(b) for b in branches if b != "null"]
        empty_is_null = self.empty_is_null and nullable

        def union(value: Any) -> Any:
            if value is None or (empty_is_null and value == ""):
                if not nullable:
                    raise _Bad("must not be null")
                return None
            first: _Bad | None = None
            for convert in others:
                try:
                    return convert(value)
                except _Bad as e:
                    first = first or e
            raise first or _Bad("matches no branch of the union")

        return union

    def _array(self, schema: Any) -> Convert:
        items = self._compile(schema["items"])

        def array(value: Any) -> list[Any]:
            if isinstance(value, str):  # a CSV cell: a JSON list, or items separated by ';'
                value = _split(value)
            if not isinstance(value, list | tuple):
                raise _Bad(f"expected a list, got {type(value).__name__}")
            out = []
            for i, item in enumerate(value):
                try:
                    out.append(items(item))
                except _Bad as e:
                    e.path.insert(0, f"[{i}]")
                    raise
            return out

        return array

    def _map(self, schema: Any) -> Convert:
        values = self._compile(schema["values"])

        def map_(value: Any) -> dict[str, Any]:
            if not isinstance(value, Mapping):
                raise _Bad(f"expected an object, got {type(value).__name__}")
            out = {}
            for key, item in value.items():
                try:
                    out[key] = values(item)
                except _Bad as e:
                    e.path.insert(0, key)
                    raise
            return out

        return map_

    def _primitive(self, kind: str, logical: str | None) -> Convert:
        convert = _LOGICAL.get(logical or "") or _PRIMITIVE.get(kind) or (lambda v: v)
        as_text = self.numbers_as_text and kind == "string"

        def primitive(value: Any) -> Any:
            if value is None and kind != "null":
                raise _Bad("must not be null")
            if as_text and isinstance(value, int | float | Decimal) and not isinstance(value, bool):
                return str(value)
            try:
                return convert(value)
            except (ValueError, TypeError) as e:
                raise _Bad(str(e)) from None

        return primitive


def _join(path: list[str]) -> str:
    return "".join(p if p.startswith("[") or i == 0 else f".{p}" for i, p in enumerate(path))


def _split(text: str) -> Any:
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise _Bad(f"not a JSON list: {e.msg}") from None
    return [item.strip() for item in text.split(";") if item.strip()]


def _enum(symbols: list[str]) -> Convert:
    def enum(value: Any) -> Any:
        if value not in symbols:
            raise _Bad(f"{value!r} is not one of {', '.join(symbols)}")
        return value

    return enum


def _string(v: Any) -> str:
    if v.__class__ is not str and not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__} {v!r}")
    return v


def _integer(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise TypeError(f"expected an integer, got {type(v).__name__} {v!r}")
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"{v!r} is not an integer") from None


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise TypeError(f"expected a number, got {type(v).__name__} {v!r}")
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"{v!r} is not a number") from None


def _boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{v!r} is not true or false")


def _date(v: Any) -> date | int:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date) or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    if isinstance(v, str):
        try:
            return date.fromisoformat(v.strip())
        except ValueError:
            raise ValueError(f"{v!r} is not a date (YYYY-MM-DD)") from None
    raise TypeError(f"expected a date, got {type(v).__name__} {v!r}")


def _timestamp(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, date):
        return to_millis(v)
    if isinstance(v, str):
        try:
            return to_millis(datetime.fromisoformat(v.strip()))
        except ValueError:
            raise ValueError(f"{v!r} is not an ISO 8601 timestamp") from None
    raise TypeError(f"expected a timestamp, got {type(v).__name__} {v!r}")


_PRIMITIVE: dict[str, Callable[[Any], Any]] = {
    "string": _string,
    "int": _integer,
    "long": _integer,
    "float": _float,
    "double": _float,
    "boolean": _boolean,
}
_LOGICAL: dict[str, Callable[[Any], Any]] = {"date": _date, "timestamp-millis": _timestamp}


def coerce_change(schema: Schema, change: Mapping[str, Any], *, empty_is_null: bool = False) -> dict[str, Any]:
    """``change`` with every value converted for ``schema``; ``RecordInvalid`` names the first field that cannot be."""
    return Coercer(empty_is_null=empty_is_null).record(expand(schema), change, "")


def entity_record_schema(schema: Schema) -> Any:
    """The (expanded) entity record inside a change schema's ``after``."""
    field = next(f for f in expand(schema)["fields"] if f["name"] == "after")
    return next(b for b in field["type"] if b != "null")


def coerce_entity(schema: Schema, entity: Mapping[str, Any], coercer: Coercer | None = None) -> dict[str, Any]:
    """One entity record (the ``after`` of change ``schema``) converted, for sources that read rows, not changes."""
    return (coercer or Coercer()).record(entity_record_schema(schema), entity, "after")
