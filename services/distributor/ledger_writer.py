"""Ledger entries sealed and encoded from templates: the distributor's hot path for its audit trail.

Most of an entry is the same for every delivery to one holder under one agreement: kind, outcome, reason,
holder, agreement, purpose, legal basis, entity type, fields, inbox. A template holds those parts already
written, as canonical JSON (for the hash) and as Avro in the Confluent framing (for the topic), so an entry
costs its few changing values (ids, key, version, time, seq, hashes), one SHA-256 and two string formats,
instead of a JSON dump of the whole entry and a fastavro write (about half the time of a delivery).

The reference is ``Chain.append`` plus ``Serde.encode``: the first entry of every new shape is made that way,
and the template is kept only if it renders exactly the same JSON hash and the same bytes. A shape a template
cannot express (a schema change it does not know) stays on the reference path, so the output never differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from json.encoder import encode_basestring
from typing import Any

from onceonly.standard import Serde
from services.distributor.ledger import Chain

log = logging.getLogger(__name__)

Schema = dict[str, Any]
VARIABLE = ("event_id", "change_event_id", "entity_key", "authority_version", "at")
"""Fields of an entry that differ from delivery to delivery (with ``seq``, ``prev_hash`` and ``hash``)."""
_TEXT = ("event_id", "change_event_id", "entity_key")
_SEALED = ("seq", "prev_hash", "hash")
_ONE_BYTE = [bytes([n << 1]) for n in range(64)]  # zigzag varints of 0..63
MAX_TEMPLATES = 10_000  # shapes are holders x agreements x outcomes x reasons; a reason with free text stays slow


class _Unsupported(Exception):
    """A field type the templates do not write; entries of that shape take the reference path."""


def _long(n: int) -> bytes:
    """Avro long: zigzag, then base-128 varint."""
    if 0 <= n < 64:
        return _ONE_BYTE[n]
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _string(s: str) -> bytes:
    b = s.encode()
    return _long(len(b)) + b


def _type_name(avro_type: Any) -> str:
    return str(avro_type.get("type")) if isinstance(avro_type, dict) else str(avro_type)


def _constant(avro_type: Any, value: Any) -> bytes:
    """The Avro bytes of a value that is the same for every entry of a shape."""
    kind = _type_name(avro_type)
    if isinstance(avro_type, list):
        for index, branch in enumerate(avro_type):
            if (value is None) == (branch == "null"):
                try:
                    return _long(index) + _constant(branch, value)
                except _Unsupported:
                    continue
        raise _Unsupported(f"no branch of {avro_type} for {value!r}")
    if kind == "null" and value is None:
        return b""
    if kind == "string" and isinstance(value, str):
        return _string(value)
    if kind in ("long", "int") and type(value) is int:
        return _long(value)
    if kind == "boolean" and isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if kind == "enum" and value in avro_type["symbols"]:
        return _long(avro_type["symbols"].index(value))
    if kind == "array" and isinstance(value, list | tuple):
        items = b"".join(_constant(avro_type["items"], v) for v in value)
        return (_long(len(value)) + items if value else b"") + b"\x00"
    raise _Unsupported(f"{kind} value {value!r}")


class _Template:
    """One shape's entries: ``json % (...)`` is the canonical JSON, ``avro % (...)`` the framed Avro value."""

    def __init__(self, text: str, avro: bytes) -> None:
        self.json = text
        self.avro = avro


class LedgerWriter:
    """``append(chain, fields)``: seal ``fields`` as the chain's next entry and return its framed Avro value."""

    def __init__(self, serde: Serde, subject: str, schema: Schema) -> None:
        self.serde = serde
        self.subject = subject
        self.schema = schema
        self._templates: dict[tuple[Any, ...], _Template | None] = {}
        self._last_at: tuple[int, bytes] = (-1, b"")
        names = [f["name"] for f in schema["fields"]]
        self._constant_names = tuple(n for n in names if n not in VARIABLE and n not in _SEALED)
        self._avro_order = [n for n in names if n in VARIABLE or n in _SEALED]
        reorder = [_AVRO_VALUES.index(n) for n in self._avro_order if n in _AVRO_VALUES]
        self._reorder = None if reorder == list(range(len(_AVRO_VALUES))) else reorder
        kinds = {f["name"]: _type_name(f["type"]) for f in schema["fields"]}
        self._usable = set(self._avro_order) == {*VARIABLE, *_SEALED} and all(
            kinds[n] in (("long", "int") if n in ("seq", "authority_version", "at") else ("string",))
            for n in self._avro_order
        )

    def append(self, chain: Chain, fields: Mapping[str, Any]) -> bytes:
        shape = self._shape(fields)
        try:
            template = self._templates.get(shape) if shape is not None else None
        except TypeError:  # a constant value that cannot be hashed: not a shape templates know
            template = shape = None
        if template is None:
            return self._reference(chain, fields, shape)
        seq, prev = chain.seq + 1, chain.head
        at, version = fields["at"], fields["authority_version"]
        event_id, change_event_id, key = fields["event_id"], fields["change_event_id"], fields["entity_key"]
        text = template.json % (
            at,
            version,
            encode_basestring(change_event_id),
            encode_basestring(key),
            encode_basestring(event_id),
            encode_basestring(prev),
            seq,
        )
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        last_at, at_bytes = self._last_at
        if at != last_at:
            at_bytes = _long(at)
            self._last_at = (at, at_bytes)
        values: tuple[bytes, ...] = (
            _long(seq),
            _string(event_id),
            _string(change_event_id),
            _string(key),
            _long(version),
            at_bytes,
            _string(prev),
            _string(digest),
        )
        if self._reorder is not None:
            values = tuple([values[i] for i in self._reorder])
        value: bytes = template.avro % values
        chain.seq, chain.head = seq, digest
        return value

    def _shape(self, fields: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The constant part of an entry, hashable; None when the entry does not have exactly the expected fields
        or a changing value is not of the type the templates write."""
        if not self._usable or len(fields) != len(self._constant_names) + len(VARIABLE):
            return None
        try:
            shape = tuple([_frozen(fields[n]) for n in self._constant_names])
            if not all(type(fields[n]) is str for n in _TEXT):
                return None
            if type(fields["at"]) is not int or type(fields["authority_version"]) is not int:
                return None
        except KeyError:
            return None
        return shape

    def _reference(self, chain: Chain, fields: Mapping[str, Any], shape: tuple[Any, ...] | None) -> bytes:
        """``Chain.append`` + ``Serde.encode``; for a new shape, also try to make its template."""
        entry = chain.append(fields)
        value = self.serde.encode(self.schema, self.subject, entry)
        if shape is not None and shape not in self._templates and len(self._templates) < MAX_TEMPLATES:
            self._templates[shape] = self._template(shape, entry, value)
        return value

    def _template(self, shape: tuple[Any, ...], entry: Mapping[str, Any], reference: bytes) -> _Template | None:
        """The template of ``entry``'s shape, if it renders ``entry`` exactly as the reference did."""
        try:
            json_text = self._json_format(entry)
            avro = self._avro_format(entry, reference[:5])
        except _Unsupported as e:
            log.warning("ledger entries like seq %s take the slow path: %s", entry.get("seq"), e)
            return None
        template = _Template(json_text, avro)
        probe = Chain(int(entry["seq"]) - 1, str(entry["prev_hash"]))
        fields = {k: v for k, v in entry.items() if k not in _SEALED}
        self._templates[shape] = template  # tried once, on a copy of the chain
        rendered = self.append(probe, fields)
        if rendered != reference or probe.head != entry["hash"]:
            log.warning("ledger template for seq %s does not match the reference; using the slow path", entry["seq"])
            return None
        return template

    def _json_format(self, entry: Mapping[str, Any]) -> str:
        """Canonical JSON (sorted keys, no spaces, UTF-8, no ``hash``) with %-slots for the changing values."""
        slots = {"at": "%d", "authority_version": "%d", "seq": "%d"} | dict.fromkeys((*_TEXT, "prev_hash"), "%s")
        parts = []
        for name in sorted(k for k in entry if k != "hash"):
            value = slots[name] if name in slots else _json(entry[name]).replace("%", "%%")
            parts.append(f"{encode_basestring(name).replace('%', '%%')}:{value}")
        text = "{" + ",".join(parts) + "}"
        if [n for n in sorted(entry) if n in slots] != list(_JSON_ORDER):
            raise _Unsupported("unexpected field names")
        return text

    def _avro_format(self, entry: Mapping[str, Any], header: bytes) -> bytes:
        """Framed Avro with %b-slots for the changing values, in schema order."""
        out = header.replace(b"%", b"%%")
        for f in self.schema["fields"]:
            if f["name"] in self._avro_order:
                out += b"%b"
            else:
                out += _constant(f["type"], entry[f["name"]]).replace(b"%", b"%%")
        return out


_AVRO_VALUES = ("seq", "event_id", "change_event_id", "entity_key", "authority_version", "at", "prev_hash", "hash")
"""The order ``append`` writes the changing values in (the schema's order, which ``_reorder`` follows if it differs)."""
_JSON_ORDER = ("at", "authority_version", "change_event_id", "entity_key", "event_id", "prev_hash", "seq")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _frozen(value: Any) -> Any:
    return tuple(value) if type(value) is list else value
