"""Writing decided records into one holder's inbox, under the holder's lock, with every step in the replay ledger.

Shared by replay and bootstrap. Only ``inbox.<holder>`` is written: no other holder's inbox, no consumer group, no
committed offset, no distributor state is touched, so other holders do not notice.

Order per batch: the ledger entries first (acknowledged), then the inbox records (acknowledged). A crash between the
two leaves entries for records that did not land, never a record the ledger does not show: for an audit of who
received what, saying too much is the safe side. The ``finished`` entry says how many landed.

Redelivery never damages a store: a record carries its change's event id and authority version, and the subscriber
applies a change only when it is newer than what the store holds (a replayed change it has is a
``skipped_duplicate``; an older one is ``skipped_stale``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar

from confluent_kafka import KafkaError, Message, Producer

from onceonly.errors import BrokerUnavailable, OnceonlyError
from onceonly.kafka import confluent_producer_config
from onceonly.settings import Settings
from onceonly.signing import DISTRIBUTOR, signed_as, signer_for
from onceonly.standard import Serde
from services.distributor.policy import Decision
from services.operator.holder_lock import HolderLock, Owner
from services.operator.replay_ledger import ReplayLedger, entry

Action = Literal["replay", "bootstrap"]
REPLAY_HEADER = "onceonly.replay"
OPERATOR_HEADER = "onceonly.replay.operator"
BATCH = 200


@dataclass
class Tally:
    delivered: int = 0
    withheld: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Planned(Protocol):
    @property
    def holder(self) -> str: ...

    @property
    def deliveries(self) -> int: ...


P = TypeVar("P", bound=Planned)


@dataclass
class Result(Generic[P]):
    """What a replay or bootstrap did: its plan, and how many records it delivered and withheld."""

    operation_id: str
    plan: P
    tally: Tally

    def to_json(self) -> dict[str, Any]:
        return {
            "operation_id": self.operation_id,
            "holder": self.plan.holder,
            "planned": self.plan.deliveries,
            "delivered": self.tally.delivered,
            "withheld": self.tally.withheld,
            "seconds": round(self.tally.elapsed, 2),
        }


class Redelivery:
    """One replay or bootstrap in progress: ``with Redelivery(...) as r: r.start(...); r.add(...); r.finish()``."""

    def __init__(
        self,
        settings: Settings,
        serde: Serde,
        holder: str,
        action: Action,
        *,
        operator: str,
        reason: str | None,
        rate: float | None = None,
        progress: Callable[[int], None] | None = None,
        started: Callable[[int], None] | None = None,
        lock_ttl: float = 30.0,
    ) -> None:
        if rate is not None and rate <= 0:
            raise OnceonlyError(f"--rate {rate} must be above 0 (records per second)")
        self.settings = settings
        self.serde = serde
        self.holder = holder
        self.action = action
        self.operator = operator
        self.reason = reason
        self.rate = rate
        self.progress = progress or (lambda _n: None)
        self.on_start = started or (lambda _total: None)
        self.operation_id = uuid.uuid4().hex[:12]
        self.signer = signer_for(settings, DISTRIBUTOR)  # holders verify inbox records (ONCEONLY_SIGNATURES)
        owner = Owner.me(action, self.operation_id, operator)
        self.lock = HolderLock.for_holder(settings, holder, owner, ttl=lock_ttl)
        self.ledger = ReplayLedger(settings, serde)
        self.tally = Tally()
        self._entries: list[dict[str, Any]] = []
        self._records: list[tuple[str, bytes, bytes]] = []
        self._producer: Producer | None = None
        self._started = False
        self._finished = False

    # -- lifecycle ------------------------------------------------------------------------------------
    def __enter__(self) -> Redelivery:
        self.lock.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: TracebackType | None
    ) -> None:
        try:
            if kind is not None and self._started and not self._finished:
                self._abandon(error)
        finally:
            try:
                if self._producer is not None:
                    self._producer.flush(10)
                self.ledger.close()
            finally:
                self.lock.release()

    def _base(self, kind: str, **fields: Any) -> dict[str, Any]:
        return entry(
            operation_id=self.operation_id,
            action=self.action,
            kind=kind,
            operator=self.operator,
            reason=self.reason,
            holder=self.holder,
            at=int(time.time() * 1000),
            **fields,
        )

    def start(self, selection: str, planned: int) -> None:
        """The ``started`` entry: who, why, what was selected and how many records should land."""
        self.ledger.append([self._base("started", detail=selection, count=planned)])
        self._started = True
        self.tally = Tally()
        self.on_start(planned)

    def finish(self) -> None:
        self._flush()
        detail = f"{self.tally.delivered} delivered, {self.tally.withheld} withheld in {self.tally.elapsed:.1f}s"
        self.ledger.append([self._base("finished", detail=detail, count=self.tally.delivered)])
        self._finished = True

    def _abandon(self, error: BaseException | None) -> None:
        """Best effort: say in the ledger that the operation stopped early (and after how many records)."""
        try:
            self._records.clear()  # not sent: the ledger must not claim them
            self._entries.clear()
            why = "interrupted" if isinstance(error, KeyboardInterrupt) else f"stopped: {error}"
            detail = f"{why} after {self.tally.delivered} delivered, {self.tally.withheld} withheld"
            self.ledger.append([self._base("finished", detail=detail[:1000], count=self.tally.delivered)])
        except Exception:  # the ledger itself may be what failed; the started entry stays without a finish
            pass

    # -- records ---------------------------------------------------------------------------------------
    def add(self, decision: Decision, source: str) -> None:
        """One decided record: written to the inbox when delivered, and recorded in the ledger either way."""
        if self.lock.lost.is_set():
            raise OnceonlyError(f"lost the lock on {self.holder} (Redis away too long); stopped")
        change, route = decision.change, decision.route
        agreement = route.agreement if route else None
        common: dict[str, Any] = {
            "event_id": decision.event_id,
            "change_event_id": str(change["event_id"]),
            "agreement_id": agreement.id if agreement else None,
            "purpose": agreement.purpose if agreement else None,
            "legal_basis": agreement.legal_basis if agreement else None,
            "entity_type": str(change["entity_type"]),
            "entity_key": str(change["entity_key"]),
            "authority_version": int(change["authority_version"]),
            "source": source,
        }
        if decision.delivered and route is not None and decision.record is not None:
            value = self.serde.encode(route.schema, route.subject, decision.record)
            self._records.append((route.inbox, str(change["entity_key"]).encode(), value))
            fields = {"fields": list(decision.fields), "withheld_fields": list(decision.withheld_fields)}
            self._entries.append(self._base("delivered", detail=decision.reason, inbox=route.inbox, **fields, **common))
        else:
            self._entries.append(self._base("withheld", detail=decision.reason, **common))
            self.tally.withheld += 1
        if len(self._entries) >= self.batch_size():
            self._flush()

    def _flush(self) -> None:
        if not self._entries:
            return
        self.ledger.append(self._entries)
        self._entries = []
        records, self._records = self._records, []
        self._send(records)
        self.tally.delivered += len(records)
        self.progress(len(records))
        if self.rate:
            ahead = self.tally.delivered / self.rate - self.tally.elapsed
            if ahead > 0:
                time.sleep(ahead)

    def _send(self, records: list[tuple[str, bytes, bytes]]) -> None:
        if not records:
            return
        if self._producer is None:
            self._producer = Producer(confluent_producer_config(self.settings))
        producer = self._producer
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(str(err))

        headers: list[tuple[str, str | bytes | None]] = [
            (REPLAY_HEADER, self.operation_id.encode()),
            (OPERATOR_HEADER, self.operator.encode()),
        ]
        for topic, key, value in records:
            signed = signed_as(self.signer, key, value, headers)
            while True:
                try:
                    producer.produce(topic, key=key, value=value, headers=signed, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.1)
        if producer.flush(60) > 0 or errors:
            why = errors[0] if errors else "no acknowledgement within 60s"
            raise BrokerUnavailable(f"the inbox of {self.holder} did not take the records: {why}")

    def batch_size(self) -> int:
        """Records per batch: smaller under a low ``rate`` so progress and pacing stay smooth."""
        return BATCH if not self.rate else max(1, min(BATCH, int(self.rate)))
