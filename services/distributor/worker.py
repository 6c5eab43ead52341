"""The distributor: change topics in, each holder's projection out to ``inbox.<holder>``, every delivery in the ledger.

Why confluent-kafka's ``Consumer`` and not a Faust agent (the issue asked for Faust):

- Commits: an offset is committed only after the batch's inbox records, ledger entries and state records were
  acknowledged, in that order. Faust acks and commits on its own timer, which could commit a change whose ledger
  entry never landed.
- State: fills need the latest state per entity after a restart. A Faust table recovers to the end offset that
  ListOffsets reports, which the embedded broker gets wrong; here state is read to the fetch high watermark.
- The ledger is one hash chain, so entries must be written by one writer in one order: a single loop does that
  without locks; a gapless idempotent producer keeps the topic in that order.
- Shutdown is bounded (the subscriber's ``Supervisor``), and the raw client is what the benchmark compares with.

Run one distributor per deployment: the ledger chain has one writer. A batch is written in four phases:
inbox records and dead letters, then ledger entries, then what an identifier upgrade moves (interest, the old key's
state), then state records; each phase is acknowledged before the next starts, and the offsets are committed last.
A crash anywhere before the commit redistributes the batch; a change whose state landed is recognised as
distributed and skipped (everything it caused landed before it), the others are delivered again with the same
event ids (subscribers skip duplicates).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from onceonly import metrics
from onceonly.deadletter import dead_letter_headers
from onceonly.errors import ConfigError
from onceonly.kafka import confluent_consumer_config
from onceonly.logs import change_fields
from onceonly.settings import Settings
from onceonly.signing import DISTRIBUTOR, SignatureRefused, authority_verifier, signer_for
from onceonly.standard import RegistryClient, RegistryUnavailable, Serde, SerdeError, frame
from services.distributor.agreements import Agreements, utc_now
from services.distributor.ledger import Chain
from services.distributor.ledger_writer import LedgerWriter
from services.distributor.policy import Decision, decide_change, decide_fill, governing
from services.distributor.projection import Route, encode_envelope
from services.distributor.recovery import committed_offsets, ledger_tail, load_interest, load_state
from services.distributor.sending import Out, gapless_producer, send
from services.distributor.state import InterestSet, StateView, interest_key
from services.distributor.topology import Topics, build_routes, platform_subjects, register_routes
from services.subscriber.polling import KAFKA_LOG, LagMeter, commit, consumer_tuning, next_batch, wait_paused

log = logging.getLogger(__name__)
OPS = ("c", "u", "d", "r")


class Undistributable(Exception):
    """A decoded record the distributor cannot route (wrong topic, missing envelope fields)."""


@dataclass
class Item:
    """One consumed record on its way through a batch."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    record: dict[str, Any] | None = None
    schema_id: int | None = None
    error: BaseException | None = None


@dataclass
class Plan:
    """What a batch writes, phase by phase, and the read positions it may commit afterwards."""

    inbox: list[Out] = field(default_factory=list)
    ledger: list[Out] = field(default_factory=list)
    moves: list[Out] = field(default_factory=list)
    state: list[Out] = field(default_factory=list)
    positions: list[tuple[str, int, int]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    delivered: Counter[tuple[str, str]] = field(default_factory=Counter)
    withheld: Counter[tuple[str, str]] = field(default_factory=Counter)

    def report(self) -> None:
        """Metrics once per batch (per-delivery label lookups cost as much as a hash)."""
        for (holder, entity_type), n in self.delivered.items():
            metrics.DELIVERED.labels(holder=holder, entity_type=entity_type).inc(n)
        for (holder, reason), n in self.withheld.items():
            metrics.WITHHELD.labels(holder=holder, reason=reason).inc(n)


def _item(message: Message) -> Item:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]
    return Item(
        message.topic() or "", message.partition() or 0, message.offset() or 0, message.key(), message.value(), headers
    )


class Distributor:
    """One distributor. ``run(stop)`` prepares (topics, subjects, recovery), then distributes until ``stop``."""

    def __init__(
        self,
        agreements: Agreements,
        settings: Settings,
        registry: RegistryClient,
        *,
        batch_size: int = 500,
        clock: Callable[[], datetime] = utc_now,
        root: Path | None = None,
    ) -> None:
        self.agreements = agreements
        self.settings = settings
        self.registry = registry
        self.serde = Serde(registry)
        self.batch_size = batch_size
        self.clock = clock
        self.root = root
        self.topics = Topics.of(settings, root)
        self.routes = build_routes(agreements, self.topics, root)
        self.platform = platform_subjects(self.topics, root)
        self.ledger = LedgerWriter(self.serde, *self.platform["ledger"])
        self._at: tuple[datetime | None, int] = (None, 0)
        self.group_id = f"{settings.topic_prefix}distributor"
        self.lag = LagMeter(self.group_id)
        self.stats: Counter[str] = Counter()
        self.state = StateView()
        self.interest = InterestSet()
        self.chain = Chain()
        self.ready = threading.Event()
        self.assigned = threading.Event()
        self._carry: list[Message] = []
        self._governing: dict[str, dict[str, Route]] = {}
        self._schema_ids: dict[int, int] = {}
        # ONCEONLY_SIGNATURES=require: authorities' signatures are checked, and what is delivered is signed
        self.verifier = authority_verifier(settings)
        self.signer = signer_for(settings, DISTRIBUTOR)

    # -- start ---------------------------------------------------------------------------------------
    def prepare(self, consumer: Consumer) -> None:
        """Check topics, own the subjects, and rebuild state, interest and the ledger head from Kafka."""
        took: dict[str, float] = {}
        started = time.monotonic()
        self._check_topics(consumer)
        self.own_subjects()
        took["subjects"], started = time.monotonic() - started, time.monotonic()
        self.chain = Chain.after(ledger_tail(self.settings, self.serde, self.topics.ledger))
        took["ledger"], started = time.monotonic() - started, time.monotonic()
        self.state = load_state(self.settings, [self.topics.state(e) for e in self.topics.entity_types])
        took["state"], started = time.monotonic() - started, time.monotonic()
        for schema_id in self.state.schema_ids():
            try:
                self.serde.writer_schema(schema_id)
            except SerdeError as e:
                log.warning(
                    "state written with schema %s cannot be read (%s); fills of it will be withheld", schema_id, e
                )
        upto = committed_offsets(consumer, self.topics.interest)
        self.interest = load_interest(self.settings, self.serde, self.topics.interest, upto)
        took["interest"] = time.monotonic() - started
        log.info(
            "distributor ready: %d agreements, %d entities in state, %d interest registrations, ledger at seq %d (%s)",
            len(self.agreements),
            len(self.state),
            len(self.interest),
            self.chain.seq,
            ", ".join(f"{step} {seconds:.1f}s" for step, seconds in took.items()),
        )

    def own_subjects(self) -> None:
        """Register every live projection (compatibility-checked) and the platform schemas before distributing."""
        now = self.clock()
        live = [r for routes in self.routes.values() for r in routes if now < r.agreement.ends]
        register_routes(self.registry, live, self.topics.inbox_compatibility())
        self._schema_ids = {id(r): self.registry.register(r.subject, r.schema) for r in live}
        for subject, schema in self.platform.values():
            self.registry.register(subject, schema)

    def _check_topics(self, consumer: Consumer) -> None:
        try:
            known = consumer.list_topics(timeout=10).topics
        except KafkaException as e:
            raise ConfigError(f"the Kafka cluster did not answer: {e}", hint="is the stack up?") from e
        missing = [t for t in self.topics.required(self.agreements.holders) if t not in known]
        if missing:
            raise ConfigError(
                f"topic {missing[0]} does not exist (+{len(missing) - 1} more)", hint="run: onceonly topics apply"
            )

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(
            confluent_consumer_config(self.settings, self.group_id, logger=KAFKA_LOG, **consumer_tuning(self.settings))
        )
        producer = gapless_producer(self.settings)
        try:
            self.prepare(consumer)
            consumer.subscribe(
                [*self.topics.by_change_topic, self.topics.interest],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            self.ready.set()
            while not stop.is_set():
                batch = next_batch(consumer, self.batch_size, self._carry, self.lag)
                if batch:
                    self._process(consumer, producer, batch, stop)
        finally:
            try:
                consumer.close()
            finally:
                producer.flush(1.0)
            log.info("distributor stopped: %s", dict(self.stats))

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        metrics.REBALANCES.labels(service="distributor").inc()
        self.lag.forget(partitions)
        log.info("distributor: assigned %d partitions", len(partitions))
        self.assigned.set()

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.lag.forget(partitions)
        if partitions:
            log.info("distributor: %d partitions revoked", len(partitions))

    def _process(self, consumer: Consumer, producer: Producer, batch: Sequence[Message], stop: threading.Event) -> None:
        items = self._decode_all(consumer, [_item(m) for m in batch], stop)
        if items is None:
            return
        plan = self.plan(items)
        for phase in (plan.inbox, plan.ledger, plan.moves, plan.state):
            if phase and not send(producer, phase, stop):
                return
        self.stats.update(plan.counts)
        plan.report()
        commit(consumer, plan.positions, self.lag)

    def _decode_all(self, consumer: Consumer, items: list[Item], stop: threading.Event) -> list[Item] | None:
        """Decode the batch; while the registry is down, pause (staying in the group) and try again."""
        delay = 0.5
        while not stop.is_set():
            try:
                for it in items:
                    if it.record is None and it.error is None:
                        self._decode(it)
                return items
            except RegistryUnavailable as e:
                log.warning("distributor: %s; pausing, retry in %.1fs", e, delay)
                wait_paused(consumer, delay, stop, self._carry)
                consumer.resume(consumer.assignment())
                delay = min(delay * 2, 10.0)
        return None

    def _decode(self, it: Item) -> None:
        try:
            decoded = self.serde.decode(it.value)
        except SerdeError as e:
            it.error = e
            return
        it.schema_id, it.record = decoded.schema_id, dict(decoded.record)
        if it.topic != self.topics.interest:
            it.error = _envelope_problem(it.record, self.topics.by_change_topic.get(it.topic))
            if it.error is None and self.verifier is not None:
                verdict = self.verifier.verify(it.key, it.value, it.headers, str(it.record["entity_type"]))
                if not verdict.ok:
                    it.error = SignatureRefused(f"the authority's signature does not hold: {verdict}")

    # -- planning (no I/O) -----------------------------------------------------------------------------
    def plan(self, items: list[Item]) -> Plan:
        """Decide every record of the batch, in order, into the writes of its phases."""
        plan = Plan()
        now = self.clock()
        self._governing = {e: governing(routes, now) for e, routes in self.routes.items()}
        for it in items:
            plan.positions.append((it.topic, it.partition, it.offset))
            if it.error is not None or it.record is None:
                self._dead_letter(plan, it, it.error or Undistributable("no record"))
            elif it.topic == self.topics.interest:
                self._on_interest(plan, it.record, now)
            else:
                self._on_change(plan, it, it.record, now)
        return plan

    def _on_change(self, plan: Plan, it: Item, change: dict[str, Any], now: datetime) -> None:
        entity_type, key, version = change["entity_type"], change["entity_key"], int(change["authority_version"])
        seen = self.state.seen(entity_type, key, version)
        if seen == "distributed":
            plan.counts["already_distributed"] += 1
            log.debug(
                "%s %s v%d was distributed before (a batch redone after a restart): skipped",
                entity_type,
                key,
                version,
                extra=change_fields(str(change["event_id"]), None, it.topic, it.partition, it.offset),
            )
            return
        plan.counts["changes" if seen == "new" else "late"] += 1
        routes = self._governing.get(entity_type, {})
        envelope: list[bytes] = []  # the envelope's bytes, encoded once for every holder of this change
        for decision in decide_change(change, routes, self.interest, now, self._previous(change)):
            self._record(plan, decision, now, it, envelope)
            if seen == "late":  # rare: one line per holder, so a search by holder finds it
                log.info(
                    "%s %s v%d arrived after a newer version: %s late",
                    entity_type,
                    key,
                    version,
                    "delivered" if decision.delivered else "withheld",
                    extra=change_fields(str(change["event_id"]), decision.holder, it.topic, it.partition, it.offset),
                )
        if seen == "late":  # the state keeps the newer value; the version joins those distributed
            stored = self.state.fill(entity_type, key, version)
        else:
            stored = self.state.advance(entity_type, key, version, it.value or b"")
        plan.state.append(Out(self.topics.state(entity_type), key.encode(), stored.value, stored.headers()))
        old = change.get("supersedes_key")
        if old and old != key:
            self._upgrade(plan, entity_type, old, key, now)

    def _previous(self, change: Mapping[str, Any]) -> Callable[[], Mapping[str, Any] | None]:
        def previous() -> Mapping[str, Any] | None:
            stored = self.state.get(change["entity_type"], change["entity_key"])
            if stored is None:
                return None
            try:
                after: Mapping[str, Any] | None = self.serde.decode(stored.value).record.get("after")
            except (SerdeError, RegistryUnavailable):
                return None
            return after

        return previous

    def _upgrade(self, plan: Plan, entity_type: str, old: str, new: str, now: datetime) -> None:
        """An identifier upgrade: the old key's state ends, and interest registered on it moves to the new key."""
        self.state.drop(entity_type, old)
        plan.moves.append(Out(self.topics.state(entity_type), old.encode(), None))
        for holder, registered_type in self.interest.registrations(old):
            if registered_type != entity_type:
                continue
            reason = f"identifier upgraded from {old} to {new}"
            for action, key in (("register", new), ("end", old)):
                record = {
                    "holder": holder,
                    "entity_type": entity_type,
                    "entity_key": key,
                    "action": action,
                    "origin": "distributor",
                    "reason": reason,
                    "requested_at": now,
                }
                self.interest.apply(record)
                subject, schema = self.platform["interest"]
                value = self.serde.encode(schema, subject, record)
                plan.moves.append(Out(self.topics.interest, interest_key(holder, entity_type, key), value))

    def _on_interest(self, plan: Plan, record: Mapping[str, Any], now: datetime) -> None:
        plan.counts["interest"] += 1
        self.interest.apply(record)
        if record["action"] != "register" or record.get("origin", "holder") != "holder":
            return
        holder, entity_type, key = str(record["holder"]), str(record["entity_type"]), str(record["entity_key"])
        stored = self.state.get(entity_type, key)
        if stored is None:
            log.info(
                "interest of %s in %s %s: no state yet, changes will follow",
                holder,
                entity_type,
                key,
                extra=change_fields(holder=holder),
            )
            return
        try:
            latest = self.serde.decode(stored.value).record
        except (SerdeError, RegistryUnavailable) as e:
            log.warning(
                "cannot fill %s with %s %s: its state does not decode: %s",
                holder,
                entity_type,
                key,
                e,
                extra=change_fields(holder=holder),
            )
            return
        decision = decide_fill(holder, entity_type, latest, self.routes.get(entity_type, []), now)
        if decision is not None:
            plan.counts["fills"] += 1
            self._record(plan, decision, now, None)

    # -- writes of one decision ----------------------------------------------------------------------
    def _encode(self, route: Route, record: dict[str, Any], envelope: list[bytes] | None) -> bytes:
        """The framed inbox value; a change's envelope bytes are shared by its holders, only before/after differ."""
        schema_id = self._schema_ids.get(id(route))
        if envelope is not None and schema_id is not None:
            try:
                if not envelope:
                    envelope.append(encode_envelope(route.entity_type, record, self.root))
                return frame(schema_id, route.encode_body(envelope[0], record))
            except Exception:  # fastavro's errors are terse: let the serde name the field that does not fit
                pass
        return self.serde.encode(route.schema, route.subject, record)

    def _record(
        self, plan: Plan, decision: Decision, now: datetime, it: Item | None, envelope: list[bytes] | None = None
    ) -> None:
        """The inbox record (if delivered) and the ledger entry of one decision."""
        route = decision.route
        change = decision.change
        if decision.delivered and route is not None and decision.record is not None:
            try:
                value = self._encode(route, decision.record, envelope)
            except SerdeError as e:
                if it is not None:
                    self._dead_letter(plan, it, e, holder=decision.holder)
                decision = Decision(
                    decision.holder,
                    decision.kind,
                    change,
                    route,
                    decision.event_id,
                    reason=f"not encodable: {e}",
                    category="unencodable",
                )
            else:
                key = str(change["entity_key"]).encode()
                signed = self.signer.headers(key, value) if self.signer is not None else []
                plan.inbox.append(Out(route.inbox, key, value, signed))
                plan.delivered[(decision.holder, route.entity_type)] += 1
                plan.counts["delivered"] += 1
        if not decision.delivered:
            plan.withheld[(decision.holder, decision.category)] += 1
            plan.counts["withheld"] += 1
        self._ledger(plan, decision, now)

    def _ledger(self, plan: Plan, decision: Decision, now: datetime) -> None:
        change, route = decision.change, decision.route
        agreement = route.agreement if route else None
        if self._at[0] is not now:
            self._at = (now, int(now.astimezone(UTC).timestamp() * 1000))
        value = self.ledger.append(
            self.chain,
            {
                "kind": decision.kind,
                "outcome": "delivered" if decision.delivered else "withheld",
                "reason": decision.reason,
                "event_id": decision.event_id,
                "change_event_id": str(change["event_id"]),
                "holder": decision.holder,
                "agreement_id": agreement.id if agreement else None,
                "purpose": agreement.purpose if agreement else None,
                "legal_basis": agreement.legal_basis if agreement else None,
                "entity_type": str(change["entity_type"]),
                "entity_key": str(change["entity_key"]),
                "authority_version": int(change["authority_version"]),
                "fields": decision.fields,
                "withheld_fields": decision.withheld_fields,
                "inbox": route.inbox if route and decision.delivered else None,
                "at": self._at[1],
            },
        )
        plan.ledger.append(Out(self.topics.ledger, decision.holder.encode(), value))

    def _dead_letter(self, plan: Plan, it: Item, error: BaseException, holder: str = "") -> None:
        plan.counts["dead_lettered"] += 1
        metrics.DEAD_LETTERS.labels(service="distributor", holder=holder).inc()
        event_id = it.record.get("event_id") if it.record else None
        headers = dead_letter_headers(
            connector="distributor",
            topic=it.topic,
            partition=it.partition,
            offset=it.offset,
            error=error,
            stage="TRANSFORMATION" if it.record is not None else "VALUE_CONVERTER",
            holder=holder,
            event_id=event_id if isinstance(event_id, str) else None,
            schema_id=it.schema_id,
            original=it.headers,
        )
        plan.inbox.append(Out(self.topics.dlq, it.key, it.value or b"", headers))
        log.warning(
            "dead letter %s[%d]@%d: %s: %s",
            it.topic,
            it.partition,
            it.offset,
            type(error).__name__,
            error,
            extra=change_fields(
                event_id if isinstance(event_id, str) else None, holder or None, it.topic, it.partition, it.offset
            ),
        )


def _envelope_problem(record: Mapping[str, Any], topic_entity: str | None) -> Undistributable | None:
    """Why a decoded change cannot be routed, or None."""
    if topic_entity is not None and record.get("entity_type") != topic_entity:
        return Undistributable(
            f"entity_type {record.get('entity_type')!r} arrived on the change topic of {topic_entity}"
        )
    for name in ("event_id", "entity_key"):
        if not record.get(name):
            return Undistributable(f"{name} is empty")
    if record.get("op") not in OPS:
        return Undistributable(f"op {record.get('op')!r} is not one of {', '.join(OPS)}")
    if record.get("op") != "d" and record.get("after") is None:
        return Undistributable(f"op {record.get('op')!r} without an 'after' record")
    return None
