"""The delivery ledger: every delivery (or withheld delivery) as an entry chained to the previous one by hash.

An entry's ``hash`` is the SHA-256 of its canonical JSON without ``hash`` (sorted keys, no spaces, UTF-8,
timestamps as epoch milliseconds), and it carries the previous entry's hash in ``prev_hash``. Changing an entry
breaks its own hash; removing or reordering entries breaks the next ``prev_hash``; ``seq`` (inside the hash)
tells which of the two happened. A chain cannot show that its newest entries were cut off: compare the head
with one kept elsewhere (``onceonly audit verify --head``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from onceonly.errors import OnceonlyError

GENESIS = "0" * 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LedgerBroken(OnceonlyError):
    """The ledger does not verify; the message names the first entry that breaks it."""


def _millis(value: datetime) -> int:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(milliseconds=1)


def plain(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry with decoded timestamps back as epoch milliseconds (how it was hashed). Entries are flat."""
    return {
        str(k): _millis(v) if isinstance(v, datetime) else list(v) if isinstance(v, tuple) else v
        for k, v in entry.items()
    }


def canonical(entry: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8, without ``hash``: what the hash is taken over."""
    body = {k: v for k, v in plain(entry).items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def _sealed(entry: dict[str, Any]) -> str:
    """``entry_hash`` of an entry built here (already plain, no ``hash`` yet): the distributor's hot path."""
    body = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(body).hexdigest()


@dataclass
class Chain:
    """The head of the chain; ``append`` numbers and seals the next entry."""

    seq: int = 0
    head: str = GENESIS

    def append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        entry = {**fields, "seq": self.seq + 1, "prev_hash": self.head}
        entry["hash"] = _sealed(entry) if "hash" not in fields else entry_hash(entry)
        self.seq, self.head = entry["seq"], entry["hash"]
        return entry

    @classmethod
    def after(cls, entry: Mapping[str, Any] | None) -> Chain:
        """The chain continuing after ``entry`` (the newest one in the ledger), or a new chain."""
        return cls() if entry is None else cls(int(entry["seq"]), str(entry["hash"]))


@dataclass(frozen=True)
class Verified:
    entries: int
    seq: int
    head: str


def _name(where: str, entry: Mapping[str, Any]) -> str:
    return (
        f"entry seq {entry.get('seq')} at {where} "
        f"(event {entry.get('event_id')}, holder {entry.get('holder')}, {entry.get('entity_type')} "
        f"{entry.get('entity_key')})"
    )


def verify(entries: Iterable[tuple[str, Mapping[str, Any]]], *, head: str | None = None) -> Verified:
    """Check the whole chain; ``LedgerBroken`` names the first entry that was changed, removed or reordered.

    ``entries`` are ``(where, entry)`` pairs in ledger order (``where``: an offset or a line number).
    """
    listed = [(where, plain(entry)) for where, entry in entries]
    all_seqs = {int(e.get("seq", 0)) for _, e in listed}
    previous, expected = GENESIS, 1
    for i, (where, entry) in enumerate(listed):
        seq = int(entry.get("seq", 0))
        if entry.get("hash") != entry_hash(entry):
            raise LedgerBroken(f"ledger broken: {_name(where, entry)} was changed: its content does not match its hash")
        if entry.get("prev_hash") != previous or seq != expected:
            raise LedgerBroken(f"ledger broken: {_name(where, entry)} {_gap(seq, expected, all_seqs, listed[:i])}")
        previous, expected = str(entry["hash"]), seq + 1
    if head is not None and head != previous:
        raise LedgerBroken(
            f"ledger broken: its head is entry seq {expected - 1} with hash {previous}, not {head}: "
            "entries were cut off the end or the chain was rewritten"
        )
    return Verified(len(listed), expected - 1, previous)


def _gap(seq: int, expected: int, all_seqs: set[int], before: list[tuple[str, dict[str, Any]]]) -> str:
    if seq > expected:
        missing = [s for s in range(expected, seq) if s not in all_seqs]
        if missing:
            span = f"{missing[0]}" if len(missing) == 1 else f"{missing[0]} to {missing[-1]}"
            return f"follows seq {expected - 1}: entry seq {span} was removed"
        return f"comes before seq {expected}: entries were reordered"
    if seq < expected and any(int(e.get("seq", 0)) == seq for _, e in before):
        return f"repeats seq {seq}: the chain forked (two writers) or an entry was copied"
    if seq < expected:
        return f"comes after seq {expected - 1}: entries were reordered"
    return f"does not follow seq {expected - 1} (prev_hash differs): entry seq {expected - 1} was rewritten"


def write_jsonl(entries: Iterable[Mapping[str, Any]], path: Path) -> int:
    """A copy of the ledger for auditors: one canonical JSON entry per line (with its hash)."""
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for entry in entries:
            out.write(json.dumps(plain(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(line N, entry)`` pairs of a copy written by ``write_jsonl``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as e:
        raise OnceonlyError(f"{path}: file not found") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise LedgerBroken(f"ledger broken: {path} line {n} is not JSON: {e.msg}") from e
        if not isinstance(entry, dict):
            raise LedgerBroken(f"ledger broken: {path} line {n} is not an entry")
        yield f"line {n}", entry
