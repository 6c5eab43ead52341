"""Where one change landed (``status``) and the history of one entity across holders (``trace``).

Outcomes come from the tracker's Redis store (``receipt:<event_id>``, ``trace:<type>:<key>``), which the tracker
folds from the receipts every holder publishes. Deliveries come from the ledgers: ``audit.deliveries`` (the
distributor) and ``audit.replays`` (operators' replays and bootstraps). A holder the change was delivered to that
has sent no receipt yet is "pending". Reading a ledger is a scan of its one partition: cheap for the size an
operator inspects by hand, and skipped with ``ledger=False`` when it is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde, SerdeError
from services.distributor.ledger import plain
from services.distributor.reading import read_to_end
from services.operator.replay_errors import UnknownEvent
from services.operator.replay_ledger import ReplayLedger
from services.tracker import receipt_store


@dataclass
class Delivery:
    """One record written to a holder's inbox (or withheld), as a ledger shows it."""

    holder: str
    event_id: str  # the inbox message's event id (a fill has its own)
    change_event_id: str
    via: str  # "distributor", "distributor fill", "replay <op>", "bootstrap <op>"
    outcome: str  # delivered | withheld
    at: int
    reason: str | None
    entity_type: str
    entity_key: str
    authority_version: int | None


@dataclass
class HolderLine:
    """Where a change stands at one holder."""

    holder: str
    state: str  # applied | skipped_duplicate | skipped_stale | dead_lettered | pending | withheld
    at: int | None
    reason: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "state": self.state,
            "at": self.at,
            "reason": self.reason,
            "deliveries": [d.__dict__ for d in self.deliveries],
        }


def deliveries(settings: Settings, serde: Serde, match: Any) -> Iterator[Delivery]:
    """Ledger entries (both ledgers) for which ``match(entry)`` is true, as deliveries."""
    for message in read_to_end(settings, {(settings.topic("audit.deliveries"), 0): 0}):
        try:
            e = plain(serde.decode(message.value()).record)  # timestamps as epoch ms
        except SerdeError:
            continue  # ``onceonly audit verify`` names a broken ledger; here it is only one line less
        if match(e):
            via = "distributor fill" if e.get("kind") == "fill" else "distributor"
            yield _delivery(e, via, str(e.get("outcome")))
    for _, e in ReplayLedger(settings, serde).entries():
        if e.get("kind") in ("delivered", "withheld") and match(e):
            yield _delivery(e, f"{e.get('action')} {e.get('operation_id')}", str(e.get("kind")))


def _delivery(e: dict[str, Any], via: str, outcome: str) -> Delivery:
    at = e.get("at")
    return Delivery(
        holder=str(e.get("holder")),
        event_id=str(e.get("event_id")),
        change_event_id=str(e.get("change_event_id")),
        via=via,
        outcome=outcome,
        at=int(at) if at is not None else 0,
        reason=e.get("detail") if "detail" in e else e.get("reason"),
        entity_type=str(e.get("entity_type")),
        entity_key=str(e.get("entity_key")),
        authority_version=e.get("authority_version"),
    )


def status(settings: Settings, event_id: str, *, ledger: bool = True) -> list[HolderLine]:
    """Per holder: the change's outcome there, or "pending" when it was delivered and no receipt came back yet."""
    store = receipt_store(settings)
    receipts = dict(store.status(event_id))
    found: list[Delivery] = []
    if ledger:
        serde = Serde(RegistryClient(settings.registry_url))
        found = list(deliveries(settings, serde, lambda e: event_id in (e.get("event_id"), e.get("change_event_id"))))
        for fill in {d.event_id for d in found if d.event_id != event_id}:  # fills carry their own event id
            for holder, s in store.status(fill).items():
                receipts.setdefault(holder, s)
    if not receipts and not found:
        where = "no receipt" + (" and no ledger entry" if ledger else "")
        raise UnknownEvent(
            f"event {event_id} is unknown: {where} names it",
            hint="check the id; receipts are kept 30 days" + ("" if ledger else "; try without --no-ledger"),
        )
    lines: dict[str, HolderLine] = {}
    for holder, s in receipts.items():
        lines[holder] = HolderLine(holder, s["outcome"], s["at"], s.get("reason"))
    for d in found:
        line = lines.get(d.holder)
        if line is None:
            state = "withheld" if d.outcome == "withheld" else "pending"
            line = lines[d.holder] = HolderLine(d.holder, state, d.at, d.reason if d.outcome == "withheld" else None)
        line.deliveries.append(d)
    return [lines[h] for h in sorted(lines)]


@dataclass
class TraceLine:
    at: int
    holder: str
    what: str  # a receipt outcome, or "delivered"/"withheld" (with how)
    event_id: str
    authority_version: int | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def trace(settings: Settings, entity_key: str, entity_type: str = "person", *, ledger: bool = True) -> list[TraceLine]:
    """Every receipt (and, with ``ledger``, every delivery) about one entity across holders, oldest first."""
    lines = [
        TraceLine(r["at"], r["holder"], r["outcome"], r["event_id"], r.get("authority_version"), r.get("reason"))
        for r in receipt_store(settings).trace(entity_type, entity_key)
    ]
    if ledger:
        serde = Serde(RegistryClient(settings.registry_url))

        def about(e: dict[str, Any]) -> bool:
            return e.get("entity_key") == entity_key and e.get("entity_type") == entity_type

        for d in deliveries(settings, serde, about):
            what = f"{d.outcome} ({d.via})"
            lines.append(TraceLine(d.at, d.holder, what, d.event_id, d.authority_version, d.reason))
    if not lines:
        raise UnknownEvent(
            f"nothing about {entity_type} {entity_key}: no receipt" + (" and no ledger entry" if ledger else ""),
            hint="check the key and --type",
        )
    return sorted(lines, key=lambda line: (line.at, line.holder))


def holders_of(lines: Iterable[HolderLine]) -> dict[str, str]:
    return {line.holder: line.state for line in lines}
