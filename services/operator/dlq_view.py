"""What ``onceonly dlq list|show`` and the operator service show: dead letters, open or closed, with their reasons.

Open means no entry of the operators' ledger (``audit.operations``) names it: that ledger is the one durable record
of re-drives, so "what is left" is the same answer from the CLI, the HTTP API and after any restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from onceonly.settings import Settings
from onceonly.standard import Serde, SerdeError
from services.operator.action_ledger import ActionLedger
from services.operator.dead_letters import DeadLetter, DeadLetterFeed, DeadLetterId, find_dead_letter
from services.operator.record_edit import to_json


@dataclass
class LetterStatus:
    letter: DeadLetter
    closed_by: dict[str, Any] | None

    @property
    def open(self) -> bool:
        return self.closed_by is None

    def as_json(self) -> dict[str, Any]:
        out = self.letter.summary()
        out["open"] = self.open
        if self.closed_by is not None:
            e = self.closed_by
            out["redriven"] = {
                "seq": e["seq"],
                "action": e["action"],
                "operator": e["operator"],
                "reason": e["reason"],
                "at": e["at"],
                "target": f"{e['target_topic']}[{e['target_partition']}]@{e['target_offset']}",
                "edits": list(e.get("edits") or []),
            }
        return out


class DeadLetterBook:
    """Dead letters of some sources with their status, kept up to date incrementally by ``refresh()``."""

    def __init__(self, settings: Settings, sources: list[str], ledger: ActionLedger | None = None) -> None:
        self.sources = sources
        self.ledger = ledger or ActionLedger(settings)
        self._feed = DeadLetterFeed(settings, sources)
        self._letters: list[DeadLetter] = []
        self._closed: dict[str, dict[str, Any]] = {}

    def refresh(self) -> DeadLetterBook:
        self._letters.extend(self._feed.new())
        self._closed = self.ledger.closed()
        return self

    def statuses(self, *, include_closed: bool = False, sources: list[str] | None = None) -> list[LetterStatus]:
        """Oldest first per source; only the open ones unless ``include_closed``."""
        wanted = set(sources or self.sources)
        out = [LetterStatus(d, self._closed.get(str(d.id))) for d in self._letters if d.id.source in wanted]
        out.sort(key=lambda s: (self.sources.index(s.letter.id.source), s.letter.id.partition, s.letter.id.offset))
        return [s for s in out if include_closed or s.open]

    def open_counts(self) -> dict[str, int]:
        """Source -> dead letters still open (every source present, 0 when none)."""
        counts = dict.fromkeys(self.sources, 0)
        for s in self.statuses():
            counts[s.letter.id.source] += 1
        return counts


def letters(settings: Settings, sources: list[str], *, include_closed: bool = False) -> list[LetterStatus]:
    """The dead letters of these sources (only the open ones unless ``include_closed``), read once."""
    return DeadLetterBook(settings, sources).refresh().statuses(include_closed=include_closed)


def letter_detail(
    settings: Settings, letter_id: DeadLetterId, serde: Serde, ledger: ActionLedger | None = None
) -> dict[str, Any]:
    """One dead letter in full: the summary, every header, and the record decoded (or why it does not decode)."""
    letter = find_dead_letter(settings, letter_id)
    closed = (ledger or ActionLedger(settings, serde)).closed().get(str(letter.id))
    out = LetterStatus(letter, closed).as_json()
    out["headers"] = {k: v.decode("utf-8", "replace") for k, v in letter.headers}
    try:
        decoded = serde.decode(letter.value)
        out["record"] = to_json(decoded.record)
        out["record_schema_id"] = decoded.schema_id
    except SerdeError as e:
        out["record"] = None
        out["record_error"] = f"{type(e).__name__}: {e}"
        out["value_preview"] = (letter.value or b"")[:64].hex(" ")
    return out
