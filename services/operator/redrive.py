"""Re-driving dead letters after a fix: back to where they are processed again, recorded in the operators' ledger.

Where a dead letter goes:

- a holder's (``dlq.<holder>``): to ``inbox.<holder>``, so that holder's subscriber applies it. Applying is idempotent
  and version-guarded, so a re-drive of something that landed meanwhile is a harmless ``skipped_duplicate``.
- the distributor's (``dlq.distributor``): to the change topic it was read from, so the distributor routes it again
  to every holder under their agreements. Never into an inbox: the record is the full change, and an inbox may only
  hold the fields its agreement grants. A distributor letter that failed for one holder only (the others got the
  change, so the distributor would skip it as already distributed) is refused with what to do instead.

Order of writes: the record first, acknowledged, then the ledger entry. A crash between the two leaves the letter
open, and re-driving it again is harmless; the other order could close a letter that was never re-driven. The
re-driven record carries ``onceonly.redrive.of`` and ``onceonly.redrive.operator`` headers, so if it fails again the
new dead letter says which one it came back from.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from onceonly.catalog import load_catalog
from onceonly.settings import Settings
from onceonly.signing import DISTRIBUTOR as DISTRIBUTOR_SIGNER
from onceonly.signing import signed_as, signer_for
from onceonly.standard import RegistryClient, Serde
from services.operator.action_ledger import ActionLedger, Writer, deliver
from services.operator.dead_letters import (
    DISTRIBUTOR,
    REDRIVE_OF,
    REDRIVE_OPERATOR,
    DeadLetter,
    DeadLetterError,
    DeadLetterId,
    dlq_topic,
    find_dead_letter,
    read_dead_letters,
)

log = logging.getLogger(__name__)
_ERROR_HEADERS = (
    "__connect.errors.",
    "onceonly.event_id",
    "onceonly.schema_id",
    "onceonly.holder",
    "onceonly.redrive.",
)

Editor = Callable[[DeadLetter], tuple[bytes, list[str]]]
"""Given the dead letter, the value to send instead and the edits made (``path: old -> new``)."""


class NotRedrivable(DeadLetterError):
    """This dead letter has no place it can safely be sent back to."""


class AlreadyRedriven(DeadLetterError):
    """The dead letter was re-driven before; it is closed."""


class MissingAuditFields(DeadLetterError):
    """A re-drive needs an operator and a reason for the ledger."""


@dataclass
class Redriven:
    """One re-drive, as recorded in the ledger."""

    letter: DeadLetter
    target_topic: str
    partition: int
    offset: int
    seq: int
    edits: list[str] = field(default_factory=list)

    def line(self) -> str:
        edited = f" (edited: {'; '.join(self.edits)})" if self.edits else ""
        return f"{self.letter.id} -> {self.target_topic}[{self.partition}]@{self.offset}, ledger seq {self.seq}{edited}"


@dataclass
class Outcome:
    redriven: list[Redriven] = field(default_factory=list)
    skipped: list[tuple[DeadLetter, str]] = field(default_factory=list)


def target_topic(settings: Settings, letter: DeadLetter) -> str:
    """Where this dead letter is processed again; ``NotRedrivable`` when there is no safe place."""
    if letter.id.source != DISTRIBUTOR:
        return settings.topic(f"inbox.{letter.id.source}")
    origin = letter.origin[0]
    if letter.holder:
        raise NotRedrivable(
            f"dead letter {letter.id} failed for holder {letter.holder} only: the other holders received the change, "
            "so the distributor would skip it as already distributed",
            hint=f"fix the cause, then replay {letter.entity_key} to {letter.holder}",
        )
    catalog = load_catalog()
    allowed = {settings.topic(catalog.change_topic(e)) for e in catalog.entity_types} | {settings.topic("interest")}
    if origin not in allowed:
        raise NotRedrivable(
            f"dead letter {letter.id} came from {origin or 'an unnamed topic'!r}, "
            "which is not a change topic of this deployment"
        )
    return origin


def redrive_headers(letter: DeadLetter, operator: str) -> list[tuple[str, bytes]]:
    """The original record's headers without any error headers, plus where it came back from and who sent it."""
    kept = [(k, v) for k, v in letter.headers if not k.startswith(_ERROR_HEADERS)]
    return [*kept, (REDRIVE_OF, str(letter.id).encode()), (REDRIVE_OPERATOR, operator.encode())]


def _check_audit(operator: str, reason: str) -> None:
    if not operator.strip():
        raise MissingAuditFields("a re-drive needs an operator name", hint="pass --operator or set ONCEONLY_OPERATOR")
    if not reason.strip():
        raise MissingAuditFields("a re-drive needs --reason: it is kept in the audit ledger with your name")


class Redriver:
    """Re-drives dead letters of one deployment and records each one in ``audit.operations``."""

    def __init__(self, settings: Settings, serde: Serde | None = None) -> None:
        self.settings = settings
        self.serde = serde or Serde(RegistryClient(settings.registry_url))
        self.ledger = ActionLedger(settings, self.serde)

    def one(self, letter_id: DeadLetterId, *, operator: str, reason: str, editor: Editor | None = None) -> Redriven:
        """Re-drive one dead letter (edited first when ``editor`` is given)."""
        _check_audit(operator, reason)
        letter = find_dead_letter(self.settings, letter_id)
        target = target_topic(self.settings, letter)
        _refuse_if_closed(self.ledger.closed(), letter)  # before an editor session, not only after it
        value, edits = editor(letter) if editor is not None else (letter.value, [])
        with self.ledger.writer() as writer:
            _refuse_if_closed(writer.closed, letter)  # another operator may have been quicker meanwhile
            return self._send(writer, letter, target, value, edits, operator, reason)

    def all_open(self, sources: list[str], *, operator: str, reason: str) -> Outcome:
        """Re-drive every open dead letter of these sources as it is; letters with no safe target are skipped."""
        _check_audit(operator, reason)
        letters = read_dead_letters(self.settings, sources)
        outcome = Outcome()
        with self.ledger.writer() as writer:
            for letter in letters:
                if str(letter.id) in writer.closed:
                    continue
                try:
                    target = target_topic(self.settings, letter)
                except NotRedrivable as e:
                    outcome.skipped.append((letter, e.message))
                    continue
                outcome.redriven.append(self._send(writer, letter, target, letter.value, [], operator, reason))
        return outcome

    def _send(
        self,
        writer: Writer,
        letter: DeadLetter,
        target: str,
        value: bytes | None,
        edits: list[str],
        operator: str,
        reason: str,
    ) -> Redriven:
        headers: list[tuple[str, Any]] = list(redrive_headers(letter, operator))
        if target.startswith(self.settings.topic("inbox.")):  # an authority's signature is never forged
            headers = signed_as(signer_for(self.settings, DISTRIBUTOR_SIGNER), letter.key, value, headers)
        sent = deliver(writer.producer, target, letter.key, value, headers)
        entry = writer.append(
            {
                "action": "edit_redrive" if edits else "redrive",
                "dead_letter_id": str(letter.id),
                "dead_letter_topic": dlq_topic(self.settings, letter.id.source),
                "holder": letter.holder,
                "event_id": letter.event_id,
                "entity_key": letter.entity_key,
                "target_topic": target,
                "target_partition": sent.partition() or 0,
                "target_offset": sent.offset() or 0,
                "operator": operator,
                "reason": reason,
                "edits": edits,
                "original_sha256": _sha256(letter.value),
                "sent_sha256": _sha256(value),
                "at": max(sent.timestamp()[1], 0),
            }
        )
        log.info("re-drove %s to %s by %s: %s", letter.id, target, operator, reason)
        return Redriven(letter, target, sent.partition() or 0, sent.offset() or 0, int(entry["seq"]), edits)


def _refuse_if_closed(closed: dict[str, dict[str, Any]], letter: DeadLetter) -> None:
    if (earlier := closed.get(str(letter.id))) is not None:
        raise AlreadyRedriven(
            f"dead letter {letter.id} was re-driven already (ledger seq {earlier['seq']}, "
            f"by {earlier['operator']}: {earlier['reason']}); it is closed",
            hint="if it failed again, it is a new dead letter: see onceonly dlq list",
        )


def _sha256(value: bytes | None) -> str:
    return hashlib.sha256(value or b"").hexdigest()
