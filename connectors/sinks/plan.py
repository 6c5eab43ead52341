"""Apply planning: turn the changes a batch will apply into few bulk statements without reordering an entity.

A step is one bulk statement (an ``executemany``) touching each entity at most once. A new step starts when an
entity reappears, so an entity's changes keep their order across steps; an identifier upgrade touches two keys
and is a step of its own. Changes to different entities may share a step in any order, which is what lets a
batch of 500 changes become a handful of statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from connectors.sinks.change import Change
from connectors.sinks.guard import EntityRef, refs

Action = Literal["upsert", "delete", "mark", "rekey", "revive", "purge"]
DeletePolicy = Literal["mark", "delete"]


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    changes: tuple[Change, ...]


def action_for(change: Change, delete_policy: DeletePolicy) -> Action:
    """What a change does to the holder's record: deletes and deaths follow the department's policy.

    A death's own ``op`` d is its retraction (a certificate issued in error): the record it ended is revived.
    A change that reaches a record its death overtook lands ended: under the delete policy that means its
    rows (both keys of an upgrade) stay gone.
    """
    if change.kept_end is not None and delete_policy == "delete":
        return "purge"
    if change.ends is not None:
        return "revive" if change.is_delete else delete_policy
    if change.is_delete:
        return delete_policy
    if change.is_identifier_upgrade:
        return "rekey"
    return "upsert"


def plan(changes: Sequence[Change], delete_policy: DeletePolicy) -> list[Step]:
    """Group changes (already admitted by the version guard, in apply order) into ordered bulk steps."""
    steps: list[Step] = []
    pending: dict[Action, list[Change]] = {}
    touched: set[EntityRef] = set()

    def flush() -> None:
        for action, group in pending.items():
            steps.append(Step(action, tuple(group)))
        pending.clear()
        touched.clear()

    for change in changes:
        action = action_for(change, delete_policy)
        keys = refs(change)
        if action == "rekey":
            flush()
            steps.append(Step(action, (change,)))
            continue
        if touched.intersection(keys):
            flush()
        pending.setdefault(action, []).append(change)
        touched.update(keys)
    flush()
    return steps
