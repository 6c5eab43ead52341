"""Editing a dead letter before it is re-driven: decode, change fields, check, encode with the same schema.

The record is shown as JSON (dates as ``YYYY-MM-DD``, timestamps as ISO 8601) and turned back into Avro values by
walking its writer schema, so an operator never types epoch days. The result is framed with the schema id the
record was written with: the holder's subscriber reads it exactly like the distributor's own records, and no new
schema is registered. Before anything is sent, the edited record must pass the Avro schema (every field, with a
path naming the first that does not fit) and the data standard's rules (``change_problems``: ID check characters,
dates, envelope sense). Identity fields cannot be edited: a different entity or version is a new change at its
authority, not a repair.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import fastavro
from fastavro.validation import validate

from onceonly.standard import Serde, SerdeError, change_problems, frame
from services.operator.dead_letters import DeadLetter, DeadLetterError

IDENTITY = ("event_id", "entity_type", "entity_key", "authority", "authority_version")
_DATE_TYPES = ("date",)
_TIME_TYPES = ("timestamp-millis", "timestamp-micros", "local-timestamp-millis", "local-timestamp-micros")


class NotEditable(DeadLetterError):
    """The dead letter's bytes do not decode, so there is no record to edit."""


class EditRefused(DeadLetterError):
    """The edit is not valid: bad JSON, an unknown field, a value the schema or the data standard refuses."""


@dataclass(frozen=True)
class Decoded:
    """A dead letter's record, as the operator sees and edits it."""

    schema_id: int
    schema: Any  # the writer schema, expanded (named types inlined)
    document: dict[str, Any]


@dataclass(frozen=True)
class Edited:
    value: bytes
    edits: list[str]


def decode_letter(serde: Serde, letter: DeadLetter) -> Decoded:
    """The record of a dead letter as JSON-ready data; ``NotEditable`` when its bytes do not decode."""
    try:
        decoded = serde.decode(letter.value)
        schema = fastavro.parse_schema(serde.registry.get_schema(decoded.schema_id), expand=True)
    except SerdeError as e:
        raise NotEditable(
            f"dead letter {letter.id} does not decode ({type(e).__name__}: {e}), so it cannot be edited",
            hint="re-drive it unchanged once its schema is registered, or have the authority publish the change again",
        ) from e
    if not isinstance(decoded.record, dict):
        raise NotEditable(f"dead letter {letter.id} is not a record but {type(decoded.record).__name__}")
    return Decoded(decoded.schema_id, schema, to_json(decoded.record))


def to_json(value: Any) -> Any:
    """Avro values as JSON values: dates and timestamps become ISO 8601 text, bytes become latin-1 text."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


def from_json(value: Any, schema: Any, path: str = "") -> Any:
    """JSON values back to what fastavro writes, guided by the (expanded) schema; unknown fields are refused."""
    if isinstance(schema, list):
        refusal: EditRefused | None = None
        for branch in schema:
            try:
                candidate = from_json(value, branch, path)
            except EditRefused as e:
                refusal = refusal or (e if branch != "null" else None)
                continue
            if validate(candidate, branch, raise_errors=False):
                return candidate
        if refusal is not None:
            raise refusal
        return value  # no branch fits: the schema check names the field
    if isinstance(schema, str):
        if schema == "null" and value is not None:
            raise EditRefused(f"{path}: not null")
        return value
    kind, logical = schema.get("type"), schema.get("logicalType")
    if isinstance(kind, dict | list):
        return from_json(value, kind, path)
    if kind == "record":
        if not isinstance(value, dict):
            raise EditRefused(f"{path or 'the record'}: expected an object, got {json.dumps(value)}")
        known = {f["name"]: f["type"] for f in schema["fields"]}
        if unknown := sorted(set(value) - set(known)):
            where = f"{path}." if path else ""
            raise EditRefused(
                f"{where}{unknown[0]} is not a field of {schema.get('name', 'the record')}",
                hint=f"its fields: {', '.join(known)}",
            )
        return {k: from_json(v, known[k], f"{path}.{k}" if path else k) for k, v in value.items()}
    if kind == "array" and isinstance(value, list):
        return [from_json(v, schema["items"], f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "map" and isinstance(value, dict):
        return {k: from_json(v, schema["values"], f"{path}.{k}") for k, v in value.items()}
    if kind in ("bytes", "fixed") and isinstance(value, str):
        return value.encode("latin-1")  # to_json wrote bytes as latin-1 text: one character per byte
    if logical in _DATE_TYPES and isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError as e:
            raise EditRefused(f"{path}: {value!r} is not a date (YYYY-MM-DD)") from e
    if logical in _TIME_TYPES and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as e:
            raise EditRefused(f"{path}: {value!r} is not a timestamp (ISO 8601)") from e
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


def _field_type(schema: Any, path: list[str], shown: str) -> Any:
    """The schema of the field at ``path`` (through unions and records); ``EditRefused`` when there is none."""
    node = schema
    for i, name in enumerate(path):
        records = _records(node)
        for record in records:
            fields = {f["name"]: f["type"] for f in record["fields"]}
            if name in fields:
                node = fields[name]
                break
        else:
            where = ".".join(path[:i]) or "the record"
            known = sorted({f["name"] for r in records for f in r["fields"]})
            raise EditRefused(
                f"{shown}: {where} has no field {name!r}",
                hint=f"its fields: {', '.join(known)}" if known else None,
            )
    return node


def _records(node: Any) -> list[dict[str, Any]]:
    branches = node if isinstance(node, list) else [node]
    out = []
    for b in branches:
        if isinstance(b, dict) and isinstance(b.get("type"), dict | list):
            out.extend(_records(b["type"]))
        elif isinstance(b, dict) and b.get("type") == "record":
            out.append(b)
    return out


def _takes_text(field_type: Any) -> bool:
    branches = field_type if isinstance(field_type, list) else [field_type]
    for b in branches:
        kind = b.get("type") if isinstance(b, dict) else b
        if kind in ("string", "enum") or (isinstance(b, dict) and b.get("logicalType") in (*_DATE_TYPES, *_TIME_TYPES)):
            return True
    return False


def apply_settings(decoded: Decoded, assignments: list[str]) -> dict[str, Any]:
    """``field.path=value`` assignments on a copy of the document. Text fields take the value as it is typed;
    other fields take JSON (``42``, ``true``, ``null``, ``["a"]``); ``null`` clears a nullable text field too."""
    document: dict[str, Any] = json.loads(json.dumps(decoded.document))
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        if not sep or not name.strip():
            raise EditRefused(f"--set {assignment!r} is not field=value", hint="e.g. --set after.district_code=110105")
        path = name.strip().split(".")
        field_type = _field_type(decoded.schema, path, name.strip())
        if raw == "null":
            value: Any = None
        elif _takes_text(field_type):
            value = raw
        else:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as e:
                raise EditRefused(f"--set {name}: {raw!r} is not a JSON value ({e.msg})") from e
        target = document
        for i, part in enumerate(path[:-1]):
            nested = target.get(part)
            if not isinstance(nested, dict):
                raise EditRefused(f"--set {name}: {'.'.join(path[: i + 1])} is empty (null) in this record")
            target = nested
        target[path[-1]] = value
    return document


def edit_in_editor(document: dict[str, Any], letter: DeadLetter, editor: str | None = None) -> dict[str, Any]:
    """Open ``$VISUAL``/``$EDITOR`` on the document as JSON; returns what was saved."""
    command = editor or os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not command:
        raise EditRefused("no editor: set $EDITOR (or $VISUAL), or change fields with --set field=value")
    with tempfile.TemporaryDirectory(prefix="onceonly-dlq-") as folder:
        path = Path(folder) / f"{str(letter.id).replace(':', '_')}.json"
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        try:
            finished = subprocess.run([*shlex.split(command), str(path)], check=False)
        except OSError as e:
            raise EditRefused(f"cannot start the editor {command!r}: {e.strerror}") from e
        if finished.returncode != 0:
            raise EditRefused(f"the editor {command!r} exited with status {finished.returncode}; nothing was re-driven")
        text = path.read_text(encoding="utf-8")
    try:
        edited = json.loads(text)
    except json.JSONDecodeError as e:
        raise EditRefused(f"the edited record is not JSON: line {e.lineno} column {e.colno}: {e.msg}") from e
    if not isinstance(edited, dict):
        raise EditRefused("the edited record must stay one JSON object")
    return edited


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Changed leaves as ``path: old -> new`` (JSON values), in field order."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            child = f"{path}.{key}" if path else key
            if key not in new:
                out.append(f"{child}: {json.dumps(old[key], ensure_ascii=False)} -> (removed)")
            elif key not in old:
                out.append(f"{child}: (absent) -> {json.dumps(new[key], ensure_ascii=False)}")
            else:
                out.extend(differences(old[key], new[key], child))
        return out
    if old != new:
        return [f"{path}: {json.dumps(old, ensure_ascii=False)} -> {json.dumps(new, ensure_ascii=False)}"]
    return []


def encode_edit(serde: Serde, decoded: Decoded, document: dict[str, Any]) -> Edited:
    """Check the edited document against the schema and the data standard, and frame it with the same schema id."""
    edits = differences(decoded.document, document)
    if not edits:
        raise EditRefused(
            "nothing was changed, so nothing was re-driven", hint="to send it as it is, leave out --edit/--set"
        )
    if touched := [f for f in IDENTITY if decoded.document.get(f) != document.get(f)]:
        raise EditRefused(
            f"{', '.join(touched)} cannot be edited: that would be another change, not a repair",
            hint="have the authority publish a new version instead",
        )
    record = from_json(document, decoded.schema)
    writer = serde.writer_schema(decoded.schema_id)
    problems = _schema_problems(record, writer)
    if problems:
        raise EditRefused(f"the edited record does not fit schema {decoded.schema_id}: {problems}")
    if "op" in record and (found := change_problems(record)):
        raise EditRefused(f"the edited record breaks the data standard: {found[0]}")
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer, record)
    value = frame(decoded.schema_id, body.getvalue())
    serde.decode(value)  # the subscriber must be able to read exactly these bytes
    return Edited(value, edits)


def _schema_problems(record: dict[str, Any], schema: Any) -> str:
    try:
        validate(record, schema, raise_errors=True)
    except Exception as e:  # fastavro's ValidationError lists "<path> is <value> of type <type> expected <schema>";
        found = getattr(e, "errors", None) or [str(e)]  # the last entry is the innermost field that does not fit
        return str(found[-1]).replace("\n", " ")[:500]
    return ""


def edit_letter(
    serde: Serde,
    letter: DeadLetter,
    *,
    assignments: list[str],
    interactive: bool,
    editor: Callable[[dict[str, Any], DeadLetter], dict[str, Any]] = edit_in_editor,
) -> Edited:
    """``--set`` assignments first, then (with ``interactive``) the editor on the result."""
    decoded = decode_letter(serde, letter)
    document = apply_settings(decoded, assignments) if assignments else decoded.document
    if interactive:
        document = editor(document, letter)
    return encode_edit(serde, decoded, document)
