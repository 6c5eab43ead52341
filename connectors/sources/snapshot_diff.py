"""The pure core of the snapshot source: what changed between the last snapshot and the current one.

No I/O: records in, decisions out. A record's identity is a digest of its canonical JSON, so a re-read of the
same input (any row order, any dict order) finds nothing to emit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

Op = Literal["c", "u", "d", "r"]
EVENT_TYPES: dict[str, str] = {"c": "created", "u": "updated", "d": "deleted", "r": "snapshot"}


def _plain(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"cannot put {type(value).__name__} into a snapshot")


def canonical(record: Mapping[str, Any]) -> str:
    """The record as JSON with sorted keys; dates as ISO text (the form the state file keeps)."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_plain)


def digest(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Known:
    """What the last snapshot says about one key."""

    version: int
    digest: str | None
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Emit:
    """One change to publish: ``after`` is the current record (None on delete); ``version`` is the next one."""

    op: Op
    key: str
    version: int
    digest: str | None
    after: Mapping[str, Any] | None

    @property
    def event_type(self) -> str:
        return EVENT_TYPES[self.op]


def diff(
    current: Mapping[str, Mapping[str, Any]],
    known: Mapping[str, Known],
    *,
    unreadable: Collection[str] = (),
    first_op: Op = "c",
) -> list[Emit]:
    """Creates, updates and deletes, sorted by key; keys in ``unreadable`` (a bad row this time) are left alone.

    A key seen again after its delete is a create with the next version: versions never go back, so holders that
    compare versions stay right across delete and re-create.
    """
    new_op: Op = first_op if not known else "c"
    out: list[Emit] = []
    for key in sorted(current):
        record = current[key]
        d = digest(record)
        was = known.get(key)
        if was is None:
            out.append(Emit(new_op, key, 1, d, record))
        elif was.deleted:
            out.append(Emit("c", key, was.version + 1, d, record))
        elif was.digest != d:
            out.append(Emit("u", key, was.version + 1, d, record))
    skip = set(unreadable)
    for key in sorted(known):
        was = known[key]
        if not was.deleted and key not in current and key not in skip:
            out.append(Emit("d", key, was.version + 1, None, None))
    return sorted(out, key=lambda e: e.key)


def too_many_deletes(emits: list[Emit], known: Mapping[str, Known], max_fraction: float) -> str | None:
    """Why this diff looks like a broken export rather than real deletes, or None (tiny tables are trusted)."""
    live = sum(1 for k in known.values() if not k.deleted)
    deletes = sum(1 for e in emits if e.op == "d")
    if live >= 10 and deletes > max_fraction * live:
        return (
            f"the input would delete {deletes} of {live} known records (more than {max_fraction:.0%}); "
            "nothing was published: check the export, or raise max_delete_fraction"
        )
    return None
