"""Confluent wire format on the hot path: magic byte 0, 4-byte big-endian schema id, Avro binary (fastavro).

Parsed schemas are cached per schema object and per id, so steady-state encode/decode is one dict lookup plus
fastavro's own work. Validation runs only after fastavro refused a record, to name the field without paying
for it on every good record.
"""

from __future__ import annotations

import io
import struct
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import fastavro
from fastavro.validation import validate

from onceonly.standard.errors import BadMagicByte, CorruptPayload, EmptyPayload, RecordInvalid, TruncatedPayload

Schema = dict[str, Any]
MAGIC = 0
_HEADER = struct.Struct(">bI")


class SchemaSource(Protocol):
    """What the serde needs from a registry (``RegistryClient`` is one)."""

    def register(self, subject: str, schema: Schema) -> int: ...

    def get_schema(self, schema_id: int) -> Schema: ...


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded value: the record and the id of the schema it was written with."""

    schema_id: int
    record: Any


def frame(schema_id: int, body: bytes) -> bytes:
    return _HEADER.pack(MAGIC, schema_id) + body


def unframe(data: bytes | None) -> tuple[int, memoryview]:
    """(schema id, Avro body) of a framed value, or a typed error saying what is wrong with the bytes."""
    if not data:
        raise EmptyPayload("the value is empty: no magic byte, schema id or body")
    if data[0] != MAGIC:
        raise BadMagicByte(f"first byte is {data[0]}, expected the Confluent magic byte 0")
    if len(data) < _HEADER.size:
        raise TruncatedPayload(f"the value has {len(data)} bytes, too short for the 5-byte header")
    return _HEADER.unpack_from(data)[1], memoryview(data)[_HEADER.size :]


def _parse(schema: Schema) -> Any:
    try:
        return fastavro.parse_schema(schema)
    except Exception as e:  # fastavro raises SchemaParseException, ValueError, KeyError, TypeError
        raise RecordInvalid("", f"not a valid Avro schema: {e}") from e


class Serde:
    """Encode records for a subject and decode framed values, resolving older writer schemas."""

    def __init__(self, registry: SchemaSource) -> None:
        self.registry = registry
        self._writers: dict[tuple[str, int], tuple[Schema, Any, bytes]] = {}
        self._by_id: dict[int, Any] = {}
        self._readers: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _writer(self, schema: Schema, subject: str) -> tuple[Any, bytes]:
        key = (subject, id(schema))
        entry = self._writers.get(key)
        if entry is None or entry[0] is not schema:
            parsed = _parse(schema)
            header = _HEADER.pack(MAGIC, self.registry.register(subject, schema))
            entry = (schema, parsed, header)  # keeps ``schema`` alive so its id() is not reused
            with self._lock:
                self._writers[key] = entry
        return entry[1], entry[2]

    def encode(self, schema: Schema, subject: str, record: dict[str, Any]) -> bytes:
        """Framed Avro bytes of ``record``; ``RecordInvalid`` names the first field that does not fit."""
        parsed, header = self._writer(schema, subject)
        out = io.BytesIO()
        out.write(header)
        try:
            fastavro.schemaless_writer(out, parsed, record)
        except Exception as e:  # fastavro raises ValueError, TypeError, AttributeError, KeyError on bad records
            raise _explain(schema, record, e) from e
        return out.getvalue()

    def writer_schema(self, schema_id: int) -> Any:
        parsed = self._by_id.get(schema_id)
        if parsed is None:
            parsed = fastavro.parse_schema(self.registry.get_schema(schema_id))
            with self._lock:
                self._by_id[schema_id] = parsed
        return parsed

    def decode(self, data: bytes | None, reader_schema: Schema | None = None) -> Decoded:
        """The record in a framed value; with ``reader_schema``, resolved from whatever older writer wrote it."""
        schema_id, body = unframe(data)
        writer = self.writer_schema(schema_id)
        reader = None
        if reader_schema is not None:
            reader = self._readers.get(id(reader_schema))
            if reader is None:
                reader = _parse(reader_schema)
                with self._lock:
                    self._readers[id(reader_schema)] = reader
        stream = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(stream, writer, reader)
        except EOFError as e:
            raise TruncatedPayload(f"the Avro body of schema {schema_id} ends early") from e
        except Exception as e:  # corrupt bytes surface as ValueError, IndexError, UnicodeDecodeError, OverflowError...
            raise CorruptPayload(
                f"the Avro body does not decode with schema {schema_id}: {type(e).__name__}: {e}"
            ) from e
        if stream.tell() != len(body):
            raise CorruptPayload(f"{len(body) - stream.tell()} bytes left after the record of schema {schema_id}")
        return Decoded(schema_id, record)


def _explain(schema: Schema, record: Any, error: Exception) -> RecordInvalid:
    """Name the field fastavro refused, using its validator (only run on the failure path)."""
    if not isinstance(record, dict):
        return RecordInvalid("", f"a record must be a dict, got {type(record).__name__}")
    try:
        found = _first_problem(record, fastavro.parse_schema(schema, expand=True))
    except Exception:  # the validator itself choked; fall back to fastavro's own message
        found = None
    return RecordInvalid(*found) if found else RecordInvalid("", str(error))


def _first_problem(datum: Any, schema: Any, depth: int = 0) -> tuple[str, str] | None:
    """(field path, reason) of the first value that does not fit, descending into records and their unions."""
    if not (isinstance(schema, dict) and schema.get("type") == "record" and isinstance(datum, dict)):
        return None
    for field in schema["fields"]:
        name, ftype = field["name"], field["type"]
        if name not in datum and "default" not in field:
            return name, "is required and has no default"
        value = datum.get(name, field.get("default"))
        if validate(value, ftype, raise_errors=False):
            continue
        branches = ftype if isinstance(ftype, list) else [ftype]
        for branch in branches:
            inner = _first_problem(value, branch, depth + 1) if depth < 8 else None
            if inner:
                return f"{name}.{inner[0]}", inner[1]
        return name, f"{value!r} is not a valid {_type_name(ftype)}"
    return None


def _type_name(avro_type: Any) -> str:
    if isinstance(avro_type, list):
        return " or ".join(_type_name(t) for t in avro_type)
    if isinstance(avro_type, dict):
        return str(avro_type.get("logicalType") or avro_type.get("name") or avro_type.get("type"))
    return str(avro_type)
