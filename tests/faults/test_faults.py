"""Whole-pipeline faults (issue #9): one pipeline, faults in sequence while a steady workload runs (the broker
restart has a pipeline of its own: ``test_broker_restart.py``).

publisher (SDK) -> change topics -> distributor process -> inbox.<holder> -> subscriber processes (hrss and tax into
SQLite, housing_fund into PostgreSQL) -> receipts -> tracker process -> Redis, on the embedded broker with ``s3://``
storage. After each fault every holder converges to the authority's state (field by field through its agreement),
nothing is lost, nothing is applied twice, and every injected record is on a dead-letter topic with its reason.
The session ends with the fault table (``conftest.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Message
from fault_kit import Expected, FaultRow, Receipt, committed_offsets, ends, produce_raw, read_topic, value_of
from fault_pipeline import Pipeline, record

from onceonly.stack.process import wait_until
from onceonly.standard import RegistryClient, Serde, frame, unframe
from services.distributor.audit import verify_ledger

pytestmark = pytest.mark.faults

UNKNOWN_SCHEMA_ID = 999_999  # the registry numbers its schemas from 1; nothing registers this many


def latest(messages: list[Message]) -> Message:
    return max(messages, key=lambda m: (m.timestamp()[1], m.offset()))


def decoded(pipeline: Pipeline, messages: list[Message]) -> list[tuple[Message, dict[str, Any]]]:
    serde = Serde(RegistryClient(pipeline.s.registry_url))
    return [(m, dict(serde.decode(m.value()).record)) for m in messages]


def receipts_of(pipeline: Pipeline, holder: str, event_id: str) -> list[Receipt]:
    return [r for r in pipeline.receipts.all() if r.holder == holder and r.event_id == event_id]


def one_more_skip(pipeline: Pipeline, holder: str, event_id: str, outcomes: tuple[str, ...]) -> Callable[[], list[str]]:
    """A check: ``holder`` answers the re-sent record with one more receipt, a skip (never a second apply)."""
    before = len(receipts_of(pipeline, holder, event_id))

    def check() -> list[str]:
        now = receipts_of(pipeline, holder, event_id)
        new = now[before:]
        if not new:
            return [f"{holder}: no receipt yet for the re-sent {event_id}"]
        wrong = [r.outcome for r in new if r.outcome not in outcomes]
        return [f"{holder}: the re-sent {event_id} was {wrong}, expected {outcomes}"] if wrong else []

    return check


def deliveries_of(pipeline: Pipeline, event_id: str) -> int:
    """Ledger entries for a change, over the whole ledger (an offset taken from ListOffsets can be inside the
    newest batch on Tansu, so counting "since" would count a batch-mate of the original as a repeat). Read until quiet
    for 2 s: on s3:// storage the first fetch of a topic from its start can take longer than a shorter pause."""
    entries = decoded(pipeline, read_topic(pipeline.s, "audit.deliveries", quiet=2.0))
    return sum(1 for _, e in entries if e["change_event_id"] == event_id)


def not_distributed_again(
    pipeline: Pipeline, event_id: str, landed: tuple[int, int], before: int
) -> Callable[[], list[str]]:
    """A check: the distributor has read past the record at ``landed`` on change.person, and the ledger holds no
    more deliveries of ``event_id`` than the ``before`` it held then: a version already distributed is skipped."""
    partition, offset = landed

    def check() -> list[str]:
        if committed_offsets(pipeline.s, "distributor", "change.person").get(partition, 0) <= offset:
            return [f"the distributor has not read change.person[{partition}]@{offset} yet"]
        now = deliveries_of(pipeline, event_id)
        return [f"{event_id} was distributed again: {now} deliveries, {before} before"] if now != before else []

    return check


def distributed_late_once(
    pipeline: Pipeline, event_id: str, landed: tuple[int, int], since: dict[int, int]
) -> Callable[[], list[str]]:
    """A check: the distributor has read past the late record at ``landed`` on change.person and delivered it to
    hrss once (one ledger entry since ``since``: an older version that arrives late is distributed, not dropped),
    and hrss, which applied the newer version first, skipped it as stale."""
    partition, offset = landed

    def check() -> list[str]:
        if committed_offsets(pipeline.s, "distributor", "change.person").get(partition, 0) <= offset:
            return [f"the distributor has not read change.person[{partition}]@{offset} yet"]
        entries = [r for _, r in decoded(pipeline, read_topic(pipeline.s, "audit.deliveries", quiet=0.3, since=since))]
        to_hrss = [e for e in entries if e["change_event_id"] == event_id and e["holder"] == "hrss"]
        if len(to_hrss) != 1:
            return [f"the late {event_id} was delivered to hrss {len(to_hrss)} times, expected once"]
        outcomes = [r.outcome for r in receipts_of(pipeline, "hrss", event_id)]
        if outcomes != ["skipped_stale"]:
            return [f"hrss answered the late {event_id} with {outcomes}, expected ['skipped_stale']"]
        return []

    return check


# -- the faults, in order ------------------------------------------------------------------------------------------


def test_steady_load_converges(pipeline: Pipeline, fault_table: list[FaultRow]) -> None:
    record(fault_table, pipeline.phase("none (steady load)", lambda: time.sleep(2.0)))


def test_distributor_sigkill(pipeline: Pipeline, fault_table: list[FaultRow]) -> None:
    def act() -> None:
        distributor = pipeline.services["distributor"]
        distributor.kill()
        time.sleep(2.0)
        distributor.start()

    record(fault_table, pipeline.phase("distributor SIGKILL", act))
    assert verify_ledger(pipeline.s).entries > 0  # one hash chain across the crash: nothing lost, nothing forked


def test_subscriber_sigkill(pipeline: Pipeline, fault_table: list[FaultRow]) -> None:
    def act() -> None:
        hrss = pipeline.services["hrss"]
        hrss.kill()
        time.sleep(2.0)
        hrss.start()

    record(fault_table, pipeline.phase("subscriber SIGKILL (hrss)", act))


def test_redis_stopped(pipeline: Pipeline, fault_table: list[FaultRow]) -> None:
    """The suite's own redis-server stops; the tracker pauses, the holders keep applying, the tracker catches up."""
    window: list[int] = []

    def act() -> None:
        window.append(time.time_ns() // 1_000_000)
        pipeline.redis.stop()
        time.sleep(2.0)
        window.append(time.time_ns() // 1_000_000)
        pipeline.redis.start()

    row = record(fault_table, pipeline.phase("Redis stopped", act))
    during = [r for r in pipeline.receipts.all() if r.outcome == "applied" and window[0] <= r.at_ms <= window[1]]
    assert during, "no holder applied anything while Redis was down: Redis must not stop applying"
    assert row.recover_s is not None


def test_postgresql_unreachable(pipeline: Pipeline, fault_table: list[FaultRow]) -> None:
    """housing_fund's PostgreSQL goes away. Not by stopping the machine's cluster (shared with other engineers):
    the subscriber reaches it through a TCP proxy, which is cut (connections broken, new ones refused)."""
    proxy = pipeline.proxy
    assert proxy is not None

    def act() -> None:
        proxy.down()
        time.sleep(2.0)
        proxy.up()

    record(fault_table, pipeline.phase("PostgreSQL unreachable (housing_fund)", act))


def test_poison_records(pipeline: Pipeline, fault_table: list[FaultRow]) -> None:
    """Bytes no reader can decode, on a change topic and on an inbox; and a change the holder's PostgreSQL refuses
    (its key does not fit the department's column), on housing_fund's inbox."""
    person = latest(read_topic(pipeline.s, "change.person"))
    tax = latest(read_topic(pipeline.s, "inbox.tax"))
    people = [m for m, r in decoded(pipeline, read_topic(pipeline.s, "inbox.housing_fund")) if r["op"] == "u"]
    fund_message, fund = decoded(pipeline, [latest(people)])[0]
    registry = RegistryClient(pipeline.s.registry_url)
    schema = registry.get_schema(unframe(value_of(fund_message))[0])
    too_long = "9" * 70
    fund.update(event_id=str(uuid.uuid4()), entity_key=too_long)
    fund["after"] = {**fund["after"], "id_number": too_long}
    refused = Serde(registry).encode(schema, f"{pipeline.s.topic('inbox.housing_fund')}-value", fund)
    poison_change = value_of(person) + b"\x00trailing garbage"
    poison_inbox = value_of(tax) + b"\x00trailing garbage"
    dead = [
        Expected("dlq.distributor", poison_change, "CorruptPayload"),
        Expected("dlq.tax", poison_inbox, "CorruptPayload"),
        Expected("dlq.housing_fund", refused, "StringDataRightTruncation"),
    ]

    def act() -> None:
        produce_raw(pipeline.s, "change.person", b"poison", poison_change)
        produce_raw(pipeline.s, "inbox.tax", b"poison", poison_inbox)
        produce_raw(pipeline.s, "inbox.housing_fund", too_long.encode(), refused)

    record(fault_table, pipeline.phase("poison records", act, dead=dead))


def test_duplicates(pipeline: Pipeline, fault_table: list[FaultRow]) -> None:
    """A change published twice (the distributor has distributed it), and an inbox record delivered twice."""
    change, original = decoded(pipeline, [latest(read_topic(pipeline.s, "change.person"))])[0]
    inbox, record_ = decoded(pipeline, [latest(read_topic(pipeline.s, "inbox.hrss"))])[0]
    checks = [one_more_skip(pipeline, "hrss", record_["event_id"], ("skipped_duplicate", "skipped_stale"))]

    def act() -> None:
        # The original must be distributed before the ledger's end is taken, or its own delivery counts as a repeat.
        def distributed() -> bool:
            done = committed_offsets(pipeline.s, "distributor", "change.person").get(change.partition() or 0, 0)
            return done > (change.offset() or 0)

        assert wait_until(distributed, 30), "the distributor did not distribute the original"
        before = deliveries_of(pipeline, original["event_id"])
        landed = produce_raw(pipeline.s, "change.person", change.key(), value_of(change))
        checks.append(not_distributed_again(pipeline, original["event_id"], landed, before))
        produce_raw(pipeline.s, "inbox.hrss", inbox.key(), value_of(inbox))

    record(fault_table, pipeline.phase("duplicates", act, checks=checks))


def test_out_of_order_versions(pipeline: Pipeline, fault_table: list[FaultRow]) -> None:
    """The authority's newer version reaches the broker before the older one; and an inbox record of an older
    version arrives after the holder applied a newer one."""
    records = decoded(pipeline, read_topic(pipeline.s, "inbox.hrss"))
    versions: dict[str, list[tuple[Message, dict[str, Any]]]] = {}
    for m, r in records:
        if r["entity_type"] == "person" and r["op"] == "u" and len(r["entity_key"]) == 18:
            versions.setdefault(r["entity_key"], []).append((m, r))
    key = next(k for k, v in sorted(versions.items()) if len({r["authority_version"] for _, r in v}) >= 2)
    stale, stale_record = min(versions[key], key=lambda mr: mr[1]["authority_version"])
    checks = [one_more_skip(pipeline, "hrss", stale_record["event_id"], ("skipped_stale",))]

    def act() -> None:
        since = ends(pipeline.s, "audit.deliveries")
        late, partition, offset = pipeline.a.out_of_order()
        checks.append(distributed_late_once(pipeline, late, (partition, offset), since))
        produce_raw(pipeline.s, "inbox.hrss", stale.key(), value_of(stale))

    record(fault_table, pipeline.phase("out-of-order versions", act, checks=checks))


def test_unknown_schema_id(pipeline: Pipeline, fault_table: list[FaultRow]) -> None:
    """Well-formed Avro bodies framed with a schema id the registry never issued, on a change topic and an inbox."""
    person = latest(read_topic(pipeline.s, "change.person"))
    hrss = latest(read_topic(pipeline.s, "inbox.hrss"))
    on_change = frame(UNKNOWN_SCHEMA_ID, bytes(unframe(value_of(person))[1]))
    on_inbox = frame(UNKNOWN_SCHEMA_ID - 1, bytes(unframe(value_of(hrss))[1]))
    dead = [
        Expected("dlq.distributor", on_change, "UnknownSchemaId"),
        Expected("dlq.hrss", on_inbox, "UnknownSchemaId"),
    ]

    def act() -> None:
        produce_raw(pipeline.s, "change.person", person.key(), on_change)
        produce_raw(pipeline.s, "inbox.hrss", hrss.key(), on_inbox)

    record(fault_table, pipeline.phase("unknown schema id", act, dead=dead))


def test_late_departure_reaches_the_condition_holder(pipeline: Pipeline, fault_table: list[FaultRow]) -> None:
    """Out of order across a condition: the person lives in the tax office's district; the older move takes them
    out of it, the newer one between two other districts. Published newer first, the older (late) move is the
    only one the tax office is entitled to, and it must still land there: its store must say the person left."""

    def act() -> None:
        pipeline.a.out_of_order(leaving=True)

    record(fault_table, pipeline.phase("out-of-order departure from a condition", act))
