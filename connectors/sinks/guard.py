"""The version guard: a change is applied only if its authority version is newer than what the holder stores.

Pure functions over watermarks, so the rule that keeps apply idempotent and ordered is tested on its own.
A watermark survives deletes (a late update must not resurrect a deleted record), identifier upgrades (the old
key's watermark points at the new key, so a late change to the old key cannot create a second person) and deaths
(a death is another authority's fact with its own versions, so it marks the person's watermark as ended).

An ended record takes no person change recorded after its end, until the death is retracted. It still takes a
change recorded before the end, and any identifier upgrade: those were overtaken by the death on the way (the
death travels on its own topic), and they land with the end re-applied, so the record never looks alive again.
A death addressed to a key that was since upgraded ends the record under its new key.

A watermark also names the events applied to its entity by the transaction that wrote it (``batch_events``), so a
redelivered change that this store already applied is told apart from one it never took: after a crash between
the store's commit and the receipts, the whole batch comes again, and each change in it is answered as applied
earlier (``repeat``), not merely as skipped, so its lost "applied" receipt is made good.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from connectors.sinks.change import Change, End

Verdict = Literal["apply", "skipped_duplicate", "skipped_stale"]
EntityRef = tuple[str, str]
"""``(entity_type, entity_key)``: what a watermark is kept for."""


@dataclass(frozen=True, slots=True)
class Watermark:
    version: int
    event_id: str
    superseded_by: str | None = None
    end: End | None = None
    batch_events: tuple[str, ...] = ()
    """Other events applied to this entity by the transaction that wrote ``event_id`` (oldest first)."""

    @property
    def ended_by(self) -> str | None:
        return self.end.event_id if self.end is not None else None

    def holds(self, event_id: str) -> bool:
        """This store applied ``event_id`` in the transaction that wrote this watermark."""
        return event_id == self.event_id or event_id in self.batch_events


@dataclass(frozen=True, slots=True)
class Decision:
    change: Change
    verdict: Verdict
    reason: str | None = None
    repeat: bool = False
    """A redelivery of a change this store applied earlier (a store that keeps the time adds it: ``applied_at``)."""
    applied_at: int | None = None


def refs(change: Change) -> list[EntityRef]:
    """The watermarks a change reads or writes: its own key, the old key of an upgrade, the record a death ends."""
    out = [(change.entity_type, change.entity_key)]
    if change.is_identifier_upgrade and change.supersedes_key:
        out.append((change.entity_type, change.supersedes_key))
    if change.ends is not None and change.ends not in out:
        out.append(change.ends)
    return out


def decide(change: Change, stored: Watermark | None) -> Decision:
    """The verdict for one change against the watermark stored for its key."""
    if stored is not None and stored.holds(change.event_id):
        return Decision(change, "skipped_duplicate", f"event {change.event_id} already applied", repeat=True)
    v = change.authority_version
    if stored is not None and stored.superseded_by is not None:
        return Decision(change, "skipped_stale", f"{change.entity_key} was superseded by {stored.superseded_by}")
    if stored is None or v > stored.version:
        if stored is not None and stored.end is not None:
            return _into_ended(change, stored.end)
        return Decision(change, "apply")
    if v == stored.version:
        return Decision(change, "skipped_duplicate", f"version {v} already applied (event {stored.event_id})")
    return Decision(change, "skipped_stale", f"version {v} is older than the stored version {stored.version}")


def _into_ended(change: Change, end: End) -> Decision:
    """A newer change to an ended record: it lands, kept ended, only if the end overtook it on the way."""
    overtaken = change.recorded_at <= end.recorded_at or change.is_identifier_upgrade
    if overtaken and not change.is_delete:
        return Decision(replace(change, kept_end=end), "apply")
    return Decision(change, "skipped_stale", f"{change.entity_key} was ended by event {end.event_id}")


def advance(change: Change, marks: dict[EntityRef, Watermark]) -> None:
    """Record an applied change in ``marks``; an upgrade also retires the old key, a death ends its record."""
    key = (change.entity_type, change.entity_key)
    marks[key] = Watermark(change.authority_version, change.event_id, end=change.kept_end)
    if change.is_identifier_upgrade and change.supersedes_key:
        old_ref = (change.entity_type, change.supersedes_key)
        old = marks.get(old_ref)
        version = max(change.authority_version, old.version if old else 0)
        marks[old_ref] = Watermark(version, change.event_id, superseded_by=change.entity_key)
    if change.ends is not None:
        ended = marks.get(change.ends) or Watermark(0, change.event_id)
        end = None if change.is_delete else End(change.event_id, change.entity_type, change.recorded_at, change.after)
        marks[change.ends] = replace(ended, end=end)


def _current_key(change: Change, marks: Mapping[EntityRef, Watermark]) -> Change:
    """A death addressed to a record that was re-keyed since ends the record under its newest key."""
    if change.ends is None:
        return change
    ref, hops = change.ends, 0
    while (mark := marks.get(ref)) is not None and mark.superseded_by is not None and hops < 8:
        ref, hops = (ref[0], mark.superseded_by), hops + 1
    return change if ref == change.ends else replace(change, ends=ref)


def guard(
    changes: Iterable[Change], stored: Mapping[EntityRef, Watermark]
) -> tuple[list[Decision], dict[EntityRef, Watermark]]:
    """Decide a batch in order; returns the decisions and the watermarks that changed.

    Each change is judged against the watermarks as left by the changes before it in the batch, so a batch
    holding versions 3, 5, 4 of one entity applies 3 and 5 and skips 4, exactly as one-by-one apply would.
    A changed watermark names the batch's other events that passed through it (``batch_events``).
    """
    current = dict(stored)
    changed: dict[EntityRef, Watermark] = {}
    trail: dict[EntityRef, list[str]] = {}
    decisions: list[Decision] = []
    for change in changes:
        change = _current_key(change, current)
        decision = decide(change, current.get((change.entity_type, change.entity_key)))
        if decision.verdict == "apply" and change.is_identifier_upgrade and change.supersedes_key:
            old = current.get((change.entity_type, change.supersedes_key))
            if old is not None and old.end is not None and decision.change.kept_end is None:
                decision = Decision(replace(change, kept_end=old.end), "apply")  # re-keyed, not revived
        decisions.append(decision)
        if decision.verdict == "apply":
            advance(decision.change, current)
            for ref in refs(decision.change):
                changed[ref] = current[ref]
                if current[ref].event_id == decision.change.event_id:  # not the record a death only ended
                    trail.setdefault(ref, []).append(decision.change.event_id)
    for ref, mark in changed.items():
        earlier = tuple(e for e in dict.fromkeys(trail.get(ref, ())) if e != mark.event_id)
        if earlier:
            changed[ref] = replace(mark, batch_events=earlier)
    return decisions, changed
