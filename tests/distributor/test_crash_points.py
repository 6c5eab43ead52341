"""A crash at each point between a batch's phases, made exact by failing the distributor's own send.

A SIGKILL (test_restart.py) lands wherever it lands; here the crash is placed deliberately, which a real kill
cannot do reliably: right after the ledger phase (inbox and ledger written, state and commit not), and right
after the state phase (everything written, commit not). That is the only substitution in these tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from distributor_kit import THREE_HOLDERS, Kafka, person, person_id, running, wait_for, write_agreements

from onceonly.settings import Settings
from onceonly.standard import RegistryClient
from services.distributor import Distributor, InterestClient, load_agreements
from services.distributor import worker as worker_module
from services.distributor.audit import ledger_entries, verify_ledger
from services.distributor.sending import Out

pytestmark = pytest.mark.broker

KEYS = [person_id(100 + i) for i in range(5)]


class Crash(Exception):
    """The process dies here."""


def crash_after(monkeypatch: pytest.MonkeyPatch, phases: int) -> None:
    """Let ``phases`` sends of the first batch through, then die before the next step."""
    real = worker_module.send
    calls = 0

    def send(producer: Any, records: Sequence[Out], stop: threading.Event) -> bool:
        nonlocal calls
        ok = real(producer, records, stop)
        calls += 1
        if calls == phases:
            raise Crash(f"crashed after phase {phases}")
        return ok

    monkeypatch.setattr(worker_module, "send", send)


def run_until_crash(make: Callable[[], Distributor]) -> None:
    distributor = make()
    stop = threading.Event()
    with pytest.raises(Crash):
        distributor.run(stop)


def test_a_crash_before_the_state_phase_redelivers_and_after_it_does_not(
    topics: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = Kafka(topics)
    agreements = load_agreements(write_agreements(tmp_path / "a.yaml", THREE_HOLDERS[:1]))  # hrss: all persons

    def make() -> Distributor:
        return Distributor(agreements, topics, RegistryClient(topics.registry_url), batch_size=500)

    first = [person(k, v) for v in (1, 2) for k in KEYS]
    kafka.publish(*first)
    crash_after(monkeypatch, 2)  # the first batch's inbox records and ledger entries landed; no state, no commit
    run_until_crash(make)
    landed = {r["event_id"] for r in kafka.decoded("inbox.hrss")}
    assert landed and not kafka.read("state.person")
    monkeypatch.undo()
    with running(make()):
        wait_for(lambda: kafka.committed("distributor", "change.person") == 10, 60, "the replay")
    inbox = [r["event_id"] for r in kafka.decoded("inbox.hrss")]
    assert sorted(inbox) == sorted([c["event_id"] for c in first] + list(landed))  # the crashed batch again, same ids

    second = [person(k, 3) for k in KEYS]
    kafka.publish(*second)
    crash_after(monkeypatch, 3)  # inbox, ledger and state landed; no commit
    run_until_crash(make)
    crashed = len(kafka.read("inbox.hrss")) - len(inbox)
    assert crashed > 0
    monkeypatch.undo()
    with running(make()) as distributor:
        wait_for(lambda: kafka.committed("distributor", "change.person") == 15, 60, "the replay")
        assert distributor.stats["already_distributed"] == crashed  # recognised from the recovered state
        with InterestClient(topics, kafka.serde) as client:  # this run distributed nothing of KEYS[0] itself
            client.register("hrss", "person", KEYS[0])
        wait_for(lambda: kafka.committed("distributor", "interest") == 1, 60, "the fill")
    records = kafka.decoded("inbox.hrss")
    assert sorted(r["event_id"] for r in records if r["op"] != "r") == sorted(inbox + [c["event_id"] for c in second])
    (fill,) = [r for r in records if r["op"] == "r"]
    assert (fill["entity_key"], fill["authority_version"]) == (KEYS[0], 3)

    entries = [e for _, e in ledger_entries(topics, kafka.serde)]
    assert verify_ledger(topics).entries == len(entries) == len(records)  # every delivery, repeats too, one chain
    assert [e["seq"] for e in entries] == list(range(1, len(records) + 1))


def test_a_late_older_version_reaches_the_condition_holder_once_even_across_a_crash(
    topics: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v3 (a move between two districts outside the tax office's) lands before v2 (the move out of its district).

    The tax office is entitled to v2 only, so the late v2 must be distributed; after a crash that left its state
    record but no commit, the replayed v2 must be recognised as distributed (the gap it filled is closed)."""
    kafka = Kafka(topics)
    agreements = load_agreements(write_agreements(tmp_path / "a.yaml", [THREE_HOLDERS[0], THREE_HOLDERS[2]]))

    def make() -> Distributor:
        return Distributor(agreements, topics, RegistryClient(topics.registry_url), batch_size=500)

    key = KEYS[0]
    v1 = person(key, 1)  # in the tax office's district
    v2 = {**person(key, 2, district="310101"), "before": v1["after"]}  # leaves it
    v3 = {**person(key, 3, district="310102"), "before": v2["after"]}  # between two districts it does not cover
    kafka.publish(v1, v3)
    with running(make()):
        wait_for(lambda: kafka.committed("distributor", "change.person") == 2, 60, "v1 and v3")
    kafka.publish(v2)
    crash_after(monkeypatch, 3)  # v2's inbox records, ledger entries and state record landed; no commit
    run_until_crash(make)
    monkeypatch.undo()
    with running(make()) as distributor:
        wait_for(lambda: kafka.committed("distributor", "change.person") == 3, 60, "the replay")
        assert distributor.stats["already_distributed"] == 1 and distributor.stats["late"] == 0

    def versions(holder: str) -> list[int]:
        return [r["authority_version"] for r in kafka.decoded(f"inbox.{holder}")]

    assert versions("tax") == [1, 2]  # the departure, once
    assert versions("hrss") == [1, 3, 2]  # its subscriber skips the late v2 as stale
    states = kafka.read("state.person")  # v1, v3 (v2 a gap), then v3 again with the gap closed
    assert [kafka.serde.decode(m.value()).record["authority_version"] for m in states] == [1, 3, 3]
    assert [dict(m.headers())["onceonly.distributed"] for m in states] == [b"1;", b"1;2:2", b"1;"]
