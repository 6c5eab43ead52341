"""Bootstrap a new holder: the current granted state of every entity it is entitled to, then the live changes.

    run_bootstrap(settings, agreements, "civil_affairs", reason="joined under agreement mca-2024-004")

The state comes from ``state.<entity>`` (the latest change the distributor distributed, per entity) and each record is
the distributor's own fill message for an interest registration (``decide_fill``: latest state, ``op`` r, only the
granted fields, conditions and restrictions applied, the same deterministic fill event id), written to the holder's
inbox alone (see ``redelivery``). An agreement by interest gets the entities the holder registered interest in.

Why there is no gap and no double apply (the ordering argument):

1. Precondition, checked: the distributor already delivers to the holder. It registers the holder's inbox subjects
   before it distributes anything; bootstrap refuses while they are missing. From that moment every change the
   distributor distributes reaches the holder's inbox live (if its agreement lets it).
2. The distributor writes a change's state record only after that change's inbox records were acknowledged
   (``services.distributor.state``).
3. Bootstrap reads ``state.<entity>`` to its end after (1). Say it finds version v of an entity. A change with a
   version up to v is in the snapshot's past: the fill (version v) is at least as new. A change with a version above
   v had its state written after the read, so it was distributed after (1) and reaches the inbox live. A change
   the distributor skipped as "already distributed" after a restart had its state written before, so the snapshot
   has it or something newer. Either way the holder ends at the entity's latest version: no gap.
4. No double apply: the fill and a live change can arrive in either order. The subscriber applies a change only if
   its authority version is newer than the store's watermark, written in the same transaction as the data, so of
   the fill (v) and the live copy of the same change (v) the second is a ``skipped_duplicate``, and anything older
   than what the store holds is ``skipped_stale``.

Memory: the latest record of every entity of the holder's entity types, as the distributor itself keeps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde, SerdeError
from services.distributor.agreements import Agreements
from services.distributor.policy import Decision, decide_fill
from services.distributor.reading import read_to_end
from services.distributor.state import InterestSet, state_headers
from services.operator.holder_lock import operator_name
from services.operator.holder_routes import HolderRoutes, interest_now
from services.operator.redelivery import Redelivery, Result
from services.operator.replay_errors import DistributorNotReady, NothingToReplay
from services.operator.time_window import partitions


@dataclass
class Latest:
    value: bytes
    source: str  # topic[partition]@offset


@dataclass
class BootstrapPlan:
    holder: str
    routes: HolderRoutes = field(repr=False)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    entities: int = 0  # latest records read from the state topics
    deliveries: int = 0
    withheld: Counter[str] = field(default_factory=Counter)
    out_of_scope: int = 0  # no interest registered, condition not met
    deleted: int = 0  # the entity's latest change is a delete: nothing to fill
    undecodable: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    not_delivering: list[str] = field(default_factory=list)  # subjects the distributor has not registered yet

    def describe(self) -> str:
        types = ", ".join(f"{n} {t}" for t, n in sorted(self.by_type.items()))
        return (
            f"latest state of {', '.join(self.routes.entity_types)}: {self.entities} entities, {self.deliveries} to "
            f"deliver ({types or 'none'}), {sum(self.withheld.values())} withheld, {self.out_of_scope} out of scope, "
            f"{self.deleted} deleted"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "entity_types": self.routes.entity_types,
            "entities": self.entities,
            "deliveries": self.deliveries,
            "by_type": dict(self.by_type),
            "withheld": dict(self.withheld),
            "out_of_scope": self.out_of_scope,
            "deleted": self.deleted,
            "undecodable": self.undecodable,
            "distributor_not_delivering": self.not_delivering,
        }


BootstrapResult = Result[BootstrapPlan]


def latest_state(settings: Settings, routes: HolderRoutes) -> dict[tuple[str, str], Latest]:
    """(entity type, key) -> the newest state record, read to the fetch high watermark (as the distributor does)."""
    by_topic = routes.state_topics()
    versions: dict[tuple[str, str], int] = {}
    latest: dict[tuple[str, str], Latest] = {}
    for message in read_to_end(settings, dict.fromkeys(partitions(settings, by_topic), 0)):
        key = (by_topic[message.topic() or ""], (message.key() or b"").decode())
        value = message.value()
        if not value:  # a superseded key (identifier upgrade) ends
            latest.pop(key, None)
            versions.pop(key, None)
            continue
        version, _ = state_headers(message.headers())
        if version is None or version < versions.get(key, -1):
            continue
        versions[key] = version
        latest[key] = Latest(value, f"{message.topic()}[{message.partition()}]@{message.offset()}")
    return latest


def _fills(
    serde: Serde,
    plan: BootstrapPlan,
    state: dict[tuple[str, str], Latest],
    interest: InterestSet,
) -> Iterator[tuple[str, Decision | str]]:
    """Per entity: its fill decision, or why there is none ("out of scope", "deleted", "undecodable")."""
    holder = plan.holder
    for (entity_type, key), latest in sorted(state.items()):
        route = plan.routes.governing(entity_type, plan.now).get(holder)
        if route is None:
            continue
        if route.agreement.interest == "interest" and not interest.interested(holder, key):
            yield latest.source, "out of scope"
            continue
        try:
            record = serde.decode(latest.value).record
        except SerdeError:
            yield latest.source, "undecodable"
            continue
        decision = decide_fill(holder, entity_type, record, plan.routes.routes[entity_type], plan.now)
        if decision is None:
            yield latest.source, "deleted"
        elif decision.category == "condition":  # none of the holder's business, as for a change
            yield latest.source, "out of scope"
        else:
            yield latest.source, decision


def plan_bootstrap(
    settings: Settings,
    agreements: Agreements,
    holder: str,
    *,
    serde: Serde | None = None,
    now: datetime | None = None,
) -> tuple[BootstrapPlan, dict[tuple[str, str], Latest], InterestSet]:
    """What a bootstrap would deliver (and the state it read, for ``run_bootstrap``)."""
    registry = RegistryClient(settings.registry_url)
    serde = serde or Serde(registry)
    routes = HolderRoutes.of(agreements, settings, holder)
    plan = BootstrapPlan(holder, routes)
    if now is not None:
        plan.now = now
    plan.not_delivering = [r.subject for r in routes.unregistered(registry, plan.now)]
    interest = interest_now(settings, serde)
    state = latest_state(settings, routes)
    plan.entities = len(state)
    for _source, decided in _fills(serde, plan, state, interest):
        if isinstance(decided, str):
            if decided == "out of scope":
                plan.out_of_scope += 1
            elif decided == "deleted":
                plan.deleted += 1
            else:
                plan.undecodable += 1
        elif decided.delivered:
            plan.deliveries += 1
            plan.by_type[str(decided.change["entity_type"])] += 1
        else:
            plan.withheld[decided.category] += 1
    return plan, state, interest


def run_bootstrap(
    settings: Settings,
    agreements: Agreements,
    holder: str,
    *,
    reason: str | None,
    operator: str | None = None,
    rate: float | None = None,
    serde: Serde | None = None,
    progress: Callable[[int], None] | None = None,
    started: Callable[[int], None] | None = None,
) -> BootstrapResult:
    """Fill the holder's inbox with the latest granted state, under its lock, every step in the replay ledger."""
    serde = serde or Serde(RegistryClient(settings.registry_url))
    redelivery = Redelivery(
        settings,
        serde,
        holder,
        "bootstrap",
        operator=operator or operator_name(),
        reason=reason,
        rate=rate,
        progress=progress,
        started=started,
    )
    with redelivery:  # the lock first: the snapshot is read while nobody else redelivers to this holder
        plan, state, interest = plan_bootstrap(settings, agreements, holder, serde=serde)
        if plan.not_delivering:
            raise DistributorNotReady(
                f"the distributor does not deliver to {holder} yet (no schema under {plan.not_delivering[0]}): a "
                "snapshot taken now could miss the changes made before it starts",
                hint="start (or restart) the distributor with the holder's agreement, then bootstrap",
            )
        if plan.deliveries == 0:
            raise NothingToReplay(f"nothing to bootstrap for {holder}: {plan.describe()}")
        redelivery.start(plan.describe(), plan.deliveries)
        for source, decided in _fills(serde, plan, state, interest):
            if isinstance(decided, Decision):
                redelivery.add(decided, source)
        redelivery.finish()
    return BootstrapResult(redelivery.operation_id, plan, redelivery.tally)
