"""The version guard: a change is applied only if its authority version is newer than what the holder stores.

Pure functions over watermarks, so the rule that keeps apply idempotent and ordered is tested on its own.
A watermark survives deletes (a late update must not resurrect a deleted record), identifier upgrades (the old
key's watermark points at the new key, so a late change to the old key cannot create a second person) and deaths
(a death is another authority's fact with its own versions, so it marks the person's watermark as ended: later
person changes are skipped until the death is retracted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from connectors.sinks.change import Change

Verdict = Literal["apply", "skipped_duplicate", "skipped_stale"]
EntityRef = tuple[str, str]
"""``(entity_type, entity_key)``: what a watermark is kept for."""


@dataclass(frozen=True, slots=True)
class Watermark:
    version: int
    event_id: str
    superseded_by: str | None = None
    ended_by: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    change: Change
    verdict: Verdict
    reason: str | None = None


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
    v = change.authority_version
    if stored is not None and stored.superseded_by is not None:
        return Decision(change, "skipped_stale", f"{change.entity_key} was superseded by {stored.superseded_by}")
    if stored is not None and stored.ended_by is not None and v > stored.version:
        return Decision(change, "skipped_stale", f"{change.entity_key} was ended by event {stored.ended_by}")
    if stored is None or v > stored.version:
        return Decision(change, "apply")
    if v == stored.version:
        return Decision(change, "skipped_duplicate", f"version {v} already applied (event {stored.event_id})")
    return Decision(change, "skipped_stale", f"version {v} is older than the stored version {stored.version}")


def advance(change: Change, marks: dict[EntityRef, Watermark]) -> None:
    """Record an applied change in ``marks``; an upgrade also retires the old key."""
    key = (change.entity_type, change.entity_key)
    marks[key] = Watermark(change.authority_version, change.event_id)
    if change.is_identifier_upgrade and change.supersedes_key:
        old_ref = (change.entity_type, change.supersedes_key)
        old = marks.get(old_ref)
        version = max(change.authority_version, old.version if old else 0)
        marks[old_ref] = Watermark(version, change.event_id, superseded_by=change.entity_key)
    if change.ends is not None:
        ended = marks.get(change.ends) or Watermark(0, change.event_id)
        marks[change.ends] = replace(ended, ended_by=None if change.is_delete else change.event_id)


def guard(
    changes: Iterable[Change], stored: Mapping[EntityRef, Watermark]
) -> tuple[list[Decision], dict[EntityRef, Watermark]]:
    """Decide a batch in order; returns the decisions and the watermarks that changed.

    Each change is judged against the watermarks as left by the changes before it in the batch, so a batch
    holding versions 3, 5, 4 of one entity applies 3 and 5 and skips 4, exactly as one-by-one apply would.
    """
    current = dict(stored)
    changed: dict[EntityRef, Watermark] = {}
    decisions: list[Decision] = []
    for change in changes:
        decision = decide(change, current.get((change.entity_type, change.entity_key)))
        if decision.verdict == "apply" and change.is_identifier_upgrade and change.supersedes_key:
            old = current.get((change.entity_type, change.supersedes_key))
            if old is not None and old.ended_by is not None:  # re-keying must not revive the record
                reason = f"{change.supersedes_key} was ended by event {old.ended_by}"
                decision = Decision(change, "skipped_stale", reason)
        decisions.append(decision)
        if decision.verdict == "apply":
            advance(change, current)
            for ref in refs(change):
                changed[ref] = current[ref]
    return decisions, changed
