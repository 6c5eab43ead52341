"""Who gets what of one change: pure decisions, no I/O, so every rule is tested without a broker.

For each holder with an agreement for the change's entity type: out of scope (interest not registered,
condition not met) means no delivery and no ledger entry, because the change is none of the holder's business.
In scope but stopped by a rule (agreement not in force, citizen restriction) means a withheld entry in the
ledger with the reason. Otherwise the change is delivered, projected to the granted fields.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from onceonly.standard.identity import legacy_id15
from services.distributor.projection import Route
from services.distributor.state import InterestSet

Kind = Literal["change", "fill"]
Entity = Mapping[str, Any]


@dataclass(frozen=True)
class Decision:
    """One holder's outcome for one change (or fill): the inbox record, or why it was withheld."""

    holder: str
    kind: Kind
    change: Mapping[str, Any]
    route: Route | None
    event_id: str
    record: dict[str, Any] | None = None
    reason: str | None = None
    category: str = "delivered"
    withheld_fields: tuple[str, ...] = ()

    @property
    def delivered(self) -> bool:
        return self.record is not None

    @property
    def fields(self) -> tuple[str, ...]:
        if self.route is None or self.record is None:
            return ()
        if not self.withheld_fields:
            return self.route.fields
        return tuple(f for f in self.route.fields if f not in self.withheld_fields)


def governing(routes: Iterable[Route], now: datetime) -> dict[str, Route]:
    """Per holder, the route whose agreement is in force, else the one that ended last (to say why)."""
    chosen: dict[str, Route] = {}
    for route in routes:
        current = chosen.get(route.holder)
        if current is None or _better(route, current, now):
            chosen[route.holder] = route
    return chosen


def _better(candidate: Route, current: Route, now: datetime) -> bool:
    a, b = candidate.agreement, current.agreement
    if a.in_force(now) != b.in_force(now):
        return a.in_force(now)
    return a.ends > b.ends


def decide_change(
    change: Mapping[str, Any],
    routes: Iterable[Route] | Mapping[str, Route],
    interest: InterestSet,
    now: datetime,
    previous: Callable[[], Entity | None] = lambda: None,
) -> list[Decision]:
    """Every holder's decision for one change; ``previous`` gives the entity before it (for conditions).

    ``routes``: the entity type's routes, or their ``governing`` choice already made for ``now``.
    """
    decisions: list[Decision] = []
    key, old_key = str(change["entity_key"]), change.get("supersedes_key")
    chosen = routes if isinstance(routes, Mapping) else governing(routes, now)
    for holder, route in sorted(chosen.items()):
        agreement = route.agreement
        # Interest registered under a 15-digit ID number covers its 18-digit form: a change addressed to the new
        # number (a death from another authority) can reach the distributor before the upgrade that carries it over.
        if agreement.interest == "interest" and not interest.interested(holder, key, old_key, legacy_id15(key)):
            continue
        if agreement.condition and not _in_condition(agreement.condition.matches, change, previous):
            continue
        decisions.append(_checked(route, "change", change, str(change["event_id"]), now))
    return decisions


def _in_condition(
    matches: Callable[[Entity | None], bool], change: Mapping[str, Any], previous: Callable[[], Entity | None]
) -> bool:
    """In scope when the entity matches after the change or before it (so a holder also hears that it left)."""
    if matches(change.get("after")) or matches(change.get("before")):
        return True
    return change.get("before") is None and matches(previous())


def fill_event_id(holder: str, change_event_id: str) -> str:
    """Deterministic: the same state filled twice to the same holder is recognisably the same message."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"onceonly/fill/{holder}/{change_event_id}"))


def decide_fill(
    holder: str, entity_type: str, latest: Mapping[str, Any], routes: Iterable[Route], now: datetime
) -> Decision | None:
    """The fill message for a new registration: the latest state, as the holder's agreement allows.

    None when the entity no longer exists (its latest change is a delete): the later changes will follow.
    """
    if latest.get("after") is None:
        return None
    fill = {
        **latest,
        "event_id": fill_event_id(holder, str(latest["event_id"])),
        "event_type": "snapshot",
        "op": "r",
        "correction": False,
        "before": None,
    }
    route = governing([r for r in routes if r.holder == holder], now).get(holder)
    if route is None:
        reason = f"no agreement grants {holder} {entity_type}"
        return Decision(holder, "fill", latest, None, fill["event_id"], reason=reason, category="no_agreement")
    condition = route.agreement.condition
    if condition and not condition.matches(latest.get("after")):
        reason = f"condition of agreement {route.agreement.id} not met: {condition.describe()}"
        return Decision(holder, "fill", latest, route, fill["event_id"], reason=reason, category="condition")
    return _checked(route, "fill", fill, str(fill["event_id"]), now, source=latest)


def _checked(
    route: Route,
    kind: Kind,
    change: Mapping[str, Any],
    event_id: str,
    now: datetime,
    source: Mapping[str, Any] | None = None,
) -> Decision:
    """Validity and citizen restrictions, then the projection."""
    agreement = route.agreement
    original = source or change
    if why := agreement.why_not_in_force(now):
        category = "expired" if now >= agreement.ends else "not_in_force"
        return Decision(route.holder, kind, original, route, event_id, reason=why, category=category)
    restrictions = change.get("restrictions")
    if not restrictions:  # the common case: nothing to withhold
        record = route.project(change)
        return Decision(route.holder, kind, original, route, event_id, record)
    flags = frozenset(restrictions) - set(agreement.overrides)
    if "identity_protected" in flags:
        reason = f"identity_protected: the record is withheld (agreement {agreement.id} does not override it)"
        return Decision(route.holder, kind, original, route, event_id, reason=reason, category="restricted")
    if "no_commercial_use" in flags and agreement.commercial_use:
        reason = f"no_commercial_use: agreement {agreement.id} is for commercial use"
        return Decision(route.holder, kind, original, route, event_id, reason=reason, category="restricted")
    hidden, why_hidden = route.withheld_by(flags)
    if required := sorted(hidden - route.nullable):
        reason = f"{', '.join(why_hidden)}: {', '.join(required)} cannot be left out, so the record is withheld"
        return Decision(route.holder, kind, original, route, event_id, reason=reason, category="restricted")
    record = route.project(change, hidden)
    note = f"{', '.join(why_hidden)}: {', '.join(sorted(hidden))} withheld" if hidden else None
    return Decision(route.holder, kind, original, route, event_id, record, note, withheld_fields=tuple(sorted(hidden)))
