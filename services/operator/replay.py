"""Replay: redeliver the changes of a window (by time, offset or key) to one holder, projected by its agreement.

    plan = plan_replay(settings, agreements, "tax", Window.of(by_duration="2h"))   # what --dry-run prints
    result = run_replay(settings, agreements, plan, operator="alice", reason="store restored from backup")

The changes are read from ``change.<entity>`` (which keep everything) and decided with the distributor's own rules
(``decide_change``: interest, conditions, agreement in force now, citizen restrictions, field projection), for this
holder alone; the records go only to ``inbox.<holder>`` (see ``redelivery``). Nothing the distributor owns moves: no
consumer group, no state record, no interest, no other inbox.

Two passes over the window: planning counts what would be delivered and fixes each partition's end as it is now;
running reads the same offsets again and delivers. Memory stays flat whatever the window's size.

Limit: the distributor judges a condition (e.g. a district) on the change, and, when the change carries no
``before``, on the entity's previous state. Replay knows the previous state only from changes inside the window, so
a change without ``before`` whose predecessor lies before the window is judged on the change alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde, SerdeError
from services.distributor.agreements import Agreements
from services.distributor.policy import Decision, decide_change
from services.distributor.reading import read_to_end
from services.distributor.state import InterestSet
from services.distributor.worker import _envelope_problem
from services.operator.holder_lag import end_offsets
from services.operator.holder_lock import operator_name
from services.operator.holder_routes import HolderRoutes, interest_now
from services.operator.redelivery import Redelivery, Result
from services.operator.replay_errors import BadWindow, NothingToReplay, UnknownKey
from services.operator.time_window import TP, Window, millis, offsets_at_times, partitions


@dataclass
class Span:
    """One partition's part of the window: offsets ``start`` to ``stop`` (exclusive; None: to the end)."""

    topic: str
    partition: int
    start: int
    stop: int | None
    read: int = 0  # records read in the window
    deliveries: int = 0  # records the holder would receive
    first: int | None = None  # offset of the first record to deliver
    last: int | None = None  # offset of the last record to deliver
    end: int | None = None  # where planning found the end (running stops there too)

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)


@dataclass
class ReplayPlan:
    holder: str
    window: Window
    keys: tuple[str, ...]
    entity_types: list[str]
    spans: list[Span]
    routes: HolderRoutes = field(repr=False)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    changes: int = 0  # changes of the selected keys in the window
    deliveries: int = 0
    withheld: Counter[str] = field(default_factory=Counter)  # reason -> count
    out_of_scope: int = 0  # not the holder's business (interest, condition)
    undecodable: int = 0
    delivered_keys: Counter[str] = field(default_factory=Counter)
    keys_outside_window: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """The selection in words (the ledger's ``started`` entry)."""
        keys = f", keys {', '.join(self.keys)}" if self.keys else ""
        return (
            f"{', '.join(self.entity_types)} changes {self.window.describe()}{keys}: {self.changes} changes read, "
            f"{self.deliveries} to deliver, {sum(self.withheld.values())} withheld, {self.out_of_scope} out of scope"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "window": self.window.describe(),
            "entity_types": self.entity_types,
            "keys": list(self.keys),
            "changes": self.changes,
            "deliveries": self.deliveries,
            "withheld": dict(self.withheld),
            "out_of_scope": self.out_of_scope,
            "undecodable": self.undecodable,
            "distinct_keys": len(self.delivered_keys),
            "sample_keys": sorted(self.delivered_keys)[:20],
            "keys_outside_window": self.keys_outside_window,
            "partitions": [
                {
                    "topic": s.topic,
                    "partition": s.partition,
                    "from_offset": s.start,
                    "to_offset": s.end,
                    "read": s.read,
                    "deliveries": s.deliveries,
                    "first_delivery_offset": s.first,
                    "last_delivery_offset": s.last,
                }
                for s in self.spans
            ],
        }


ReplayResult = Result[ReplayPlan]


# -- planning -------------------------------------------------------------------------------------------------------


def plan_replay(
    settings: Settings,
    agreements: Agreements,
    holder: str,
    window: Window,
    *,
    keys: Sequence[str] = (),
    entity_types: list[str] | None = None,
    serde: Serde | None = None,
    now: datetime | None = None,
) -> ReplayPlan:
    """What a replay would deliver; ``NothingToReplay`` or ``UnknownKey`` when it would deliver nothing useful."""
    keys = tuple(k for k in keys if k.strip())
    if window.start is None and window.from_offset is None and not keys:
        raise BadWindow(
            "say where the replay starts: --from, --by-duration or --from-offset (or name entities with --key)"
        )
    serde = serde or Serde(RegistryClient(settings.registry_url))
    routes = HolderRoutes.of(agreements, settings, holder, entity_types)
    keys = tuple(dict.fromkeys(k.strip() for k in keys if k.strip()))
    plan = ReplayPlan(holder, window, keys, routes.entity_types, _spans(settings, routes, window), routes)
    if now is not None:
        plan.now = now
    interest = interest_now(settings, serde)
    seen_keys: set[str] = set()
    for span, message, change, decision in _decide(settings, serde, plan, interest):
        span.read += 1
        span.end = (message.offset() or 0) + 1
        if change is None:
            if decision == "undecodable":
                plan.undecodable += 1
            continue
        plan.changes += 1
        seen_keys.add(str(change["entity_key"]))
        if decision is None:
            plan.out_of_scope += 1
        elif isinstance(decision, Decision) and decision.delivered:
            plan.deliveries += 1
            span.deliveries += 1
            span.first = message.offset() if span.first is None else span.first
            span.last = message.offset()
            plan.delivered_keys[str(change["entity_key"])] += 1
        elif isinstance(decision, Decision):
            plan.withheld[decision.category] += 1
    for span in plan.spans:
        span.end = span.end if span.end is not None else span.start
    if keys:
        _check_keys(settings, plan, seen_keys)
    if plan.deliveries == 0:
        raise NothingToReplay(_nothing(plan))
    return plan


def _spans(settings: Settings, routes: HolderRoutes, window: Window) -> list[Span]:
    tps = partitions(settings, routes.change_topics())
    times = [millis(t) for t in (window.start, window.end) if t is not None]
    found = offsets_at_times(settings, tps, times) if times else []
    starts: Mapping[TP, int | None] = found[0] if window.start else {}
    stops: Mapping[TP, int | None] = found[-1] if window.end else {}
    # An offset past a partition's end would never reach its end (and a reader may fall back to the beginning).
    ends = end_offsets(settings, routes.change_topics()) if window.from_offset else {}
    spans = []
    for tp in tps:
        if window.start is not None:
            start = starts.get(tp)
            if start is None:  # no record at or after the start time
                continue
        else:
            start = window.from_offset or 0
            if start >= ends.get(tp, start + 1):
                continue
        # no record at or after the end time: the window runs to the partition's end
        spans.append(Span(tp[0], tp[1], start, stops.get(tp) if window.end else None))
    return spans


Decided = Decision | None | str  # a decision, None (out of scope), or why the record was passed over


def _decide(
    settings: Settings, serde: Serde, plan: ReplayPlan, interest: InterestSet
) -> Iterator[tuple[Span, Message, dict[str, Any] | None, Decided]]:
    """Every record of the window with this holder's decision, in partition order (so per-entity order holds)."""
    by_tp = {s.tp: s for s in plan.spans}
    starts = {s.tp: s.start for s in plan.spans}
    stops = {s.tp: s.stop for s in plan.spans if s.stop is not None}
    wanted = {k.encode() for k in plan.keys}
    topics = plan.routes.change_topics()
    previous: dict[tuple[str, str], Mapping[str, Any]] = {}
    for message in read_to_end(settings, starts, stops=stops):
        tp = (message.topic() or "", message.partition() or 0)
        span = by_tp[tp]
        if (message.offset() or 0) < span.start:  # a start past the end: the reader fell back to the beginning
            continue
        if wanted and message.key() not in wanted:
            yield span, message, None, "other key"
            continue
        try:
            record = dict(serde.decode(message.value()).record)
        except SerdeError:
            yield span, message, None, "undecodable"
            continue
        entity_type = topics[tp[0]]
        if _envelope_problem(record, entity_type) is not None:
            yield span, message, None, "undecodable"
            continue
        key = (entity_type, str(record["entity_key"]))
        routes = plan.routes.governing(entity_type, plan.now)
        decisions = decide_change(record, routes, interest, plan.now, _previous(previous, key))
        if record.get("after") is not None:
            previous[key] = record["after"]
        yield span, message, record, (decisions[0] if decisions else None)


def _previous(
    seen: dict[tuple[str, str], Mapping[str, Any]], key: tuple[str, str]
) -> Callable[[], Mapping[str, Any] | None]:
    """The entity before a change, as far as the window shows it (for conditions on a change without ``before``)."""
    return lambda: seen.get(key)


def _check_keys(settings: Settings, plan: ReplayPlan, seen: set[str]) -> None:
    """Keys with no change in the window: an error if no change topic holds them at all, else a note in the plan."""
    missing = [k for k in plan.keys if k not in seen]
    if not missing:
        return
    topics = list(plan.routes.change_topics())
    anywhere = _keys_in_history(settings, topics, missing)
    unknown = [k for k in missing if k not in anywhere]
    if unknown:
        where = ", ".join(topics)
        raise UnknownKey(
            f"no change topic holds key {', '.join(unknown)} (searched {where})",
            hint="check the key, or the entity type with --entity",
        )
    plan.keys_outside_window = missing


def _keys_in_history(settings: Settings, topics: list[str], keys: list[str]) -> set[str]:
    wanted = {k.encode(): k for k in keys}
    found: set[str] = set()
    starts = {tp: 0 for tp in partitions(settings, topics)}
    for message in read_to_end(settings, starts):
        key = message.key()
        if key in wanted:
            found.add(wanted[key])
    return found


def _nothing(plan: ReplayPlan) -> str:
    what = f"{', '.join(plan.entity_types)} changes {plan.window.describe()}"
    if plan.keys:
        what += f" for key {', '.join(plan.keys)}"
    if plan.changes == 0:
        return f"nothing to replay to {plan.holder}: no {what}"
    withheld = sum(plan.withheld.values())
    why = []
    if plan.out_of_scope:
        why.append(f"{plan.out_of_scope} are none of its business (interest or condition)")
    if withheld:
        reasons = ", ".join(f"{n} {c}" for c, n in plan.withheld.most_common())
        why.append(f"{withheld} are withheld ({reasons})")
    return f"nothing to replay to {plan.holder}: of {plan.changes} {what}, {'; '.join(why)}"


# -- running --------------------------------------------------------------------------------------------------------


def run_replay(
    settings: Settings,
    plan: ReplayPlan,
    *,
    reason: str | None,
    operator: str | None = None,
    rate: float | None = None,
    serde: Serde | None = None,
    progress: Callable[[int], None] | None = None,
    started: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Deliver the plan's records to the holder's inbox, under its lock, with every step in the replay ledger.

    ``started(total)`` is called once the lock is held and the ``started`` entry written; ``progress(n)`` as
    records land.
    """
    registry = RegistryClient(settings.registry_url)
    serde = serde or Serde(registry)
    for span in plan.spans:  # the same records as planned, not what arrived since
        span.stop = span.end
    redelivery = Redelivery(
        settings,
        serde,
        plan.holder,
        "replay",
        operator=operator or operator_name(),
        reason=reason,
        rate=rate,
        progress=progress,
        started=started,
    )
    with redelivery:
        plan.routes.register(registry, plan.now)
        interest = interest_now(settings, serde)
        redelivery.start(plan.describe(), plan.deliveries)
        for _span, message, change, decision in _decide(settings, serde, plan, interest):
            if change is not None and isinstance(decision, Decision):
                redelivery.add(decision, f"{message.topic()}[{message.partition()}]@{message.offset()}")
        redelivery.finish()
    return ReplayResult(redelivery.operation_id, plan, redelivery.tally)
