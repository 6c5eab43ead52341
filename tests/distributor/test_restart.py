"""Kill the distributor with SIGKILL mid-stream and start it again: every holder ends up with everything it is
entitled to, exactly once in effect (repeats carry the same event id), in order per entity, with the ledger's
chain unbroken across the crash and the state for fill messages recovered from Kafka."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from distributor_kit import THREE_HOLDERS, Kafka, person, person_id, spawn_distributor, wait_for, write_agreements

from onceonly.settings import Settings
from services.distributor import InterestClient
from services.distributor.audit import ledger_entries, verify_ledger

pytestmark = pytest.mark.broker

KEYS = [person_id(i, district=("110105", "310101")[i % 2]) for i in range(240)]
VERSIONS = 10
INTERESTED = KEYS[:12]


def start(settings: Settings, config: Path, log: Path) -> subprocess.Popen[bytes]:
    return spawn_distributor(config, settings, log, "--batch-size", "40")


def changes(first: int, last: int) -> list[dict[str, Any]]:
    """Versions ``first..last`` of every key, interleaved the way an authority would publish them."""
    return [person(k, v, district=k[:6]) for v in range(first, last + 1) for k in KEYS]


def test_kill_and_restart_delivers_everything_once_in_effect_and_in_order(topics: Settings, tmp_path: Path) -> None:
    kafka = Kafka(topics)
    config = write_agreements(tmp_path / "onceonly.yaml", THREE_HOLDERS[:3])
    log = tmp_path / "distributor.log"
    with InterestClient(topics, kafka.serde) as client:
        for key in INTERESTED:
            client.register("housing_fund", "person", key)
    kafka.publish(*changes(1, 3))
    total = len(KEYS) * VERSIONS

    first = start(topics, config, log)
    try:
        wait_for(lambda: kafka.committed("distributor", "change.person") >= len(KEYS) * 3, 90, "versions 1-3")
        # The kill follows the publish's last acknowledgement at once: the distributor cannot have fetched,
        # distributed, acknowledged and committed the last of these yet, however fast it has become.
        kafka.publish(*changes(4, 6))
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    finally:
        first.kill()
    done_before_kill = kafka.committed("distributor", "change.person")
    assert len(KEYS) * 3 <= done_before_kill < len(KEYS) * 6, "the kill must land mid-stream"
    kafka.publish(*changes(7, VERSIONS))  # published while the distributor is down

    second = start(topics, config, log)
    try:
        wait_for(lambda: kafka.committed("distributor", "change.person") >= total, 120, "the rest after the restart")
        late = next(k for k in KEYS[12:] if k.startswith("110105"))
        with InterestClient(topics, kafka.serde) as client:
            client.register("housing_fund", "person", late)  # its changes were distributed: state must fill it
        wait_for(lambda: kafka.committed("distributor", "interest") >= len(INTERESTED) + 1, 60, "the fill")
        started = time.monotonic()
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0, log.read_text()[-2000:]
        assert time.monotonic() - started < 15
    finally:
        second.kill()

    expected = {
        "hrss": {(k, v) for k in KEYS for v in range(1, VERSIONS + 1)},
        "tax": {(k, v) for k in KEYS if k.startswith("110105") for v in range(1, VERSIONS + 1)},
        "housing_fund": {(k, v) for k in INTERESTED for v in range(1, VERSIONS + 1)},
    }
    duplicates = 0
    received: set[tuple[str, str]] = set()
    for holder, entitled in expected.items():
        records = kafka.decoded(f"inbox.{holder}")
        received |= {(holder, r["event_id"]) for r in records}
        changes_only = [r for r in records if r["op"] != "r"]
        got = {(r["entity_key"], r["authority_version"]) for r in changes_only}
        assert got == entitled, f"{holder}: missing {sorted(entitled - got)[:3]}, extra {sorted(got - entitled)[:3]}"
        by_event: dict[str, set[tuple[str, int]]] = defaultdict(set)
        first_seen: dict[str, list[int]] = defaultdict(list)
        for r in changes_only:
            by_event[r["event_id"]].add((r["entity_key"], r["authority_version"]))
            if r["authority_version"] not in first_seen[r["entity_key"]]:
                first_seen[r["entity_key"]].append(r["authority_version"])
        assert all(len(v) == 1 for v in by_event.values()), "a repeat must carry the same event id"
        for key, versions in first_seen.items():
            assert versions == sorted(versions), f"{holder} {key} out of order: {versions}"
        duplicates += len(changes_only) - len(got)
        if holder == "housing_fund":
            fills = [r for r in records if r["op"] == "r"]
            assert [(r["entity_key"], r["authority_version"]) for r in fills] == [(late, VERSIONS)]

    verified = verify_ledger(topics)  # one chain across the crash: the restart continued from the topic's head
    entries = [e for _, e in ledger_entries(topics, kafka.serde)]
    delivered = [e for e in entries if e["outcome"] == "delivered"]
    assert verified.entries == len(entries) == len(delivered)
    assert {(e["holder"], e["event_id"]) for e in delivered} == received  # every delivery is in the ledger
    unique = sum(len(v) for v in expected.values()) + 1  # + the fill
    assert unique <= len(delivered) <= unique + duplicates  # a repeat is recorded unless its first copy's entry died
    print(f"redelivered after the crash: {duplicates}; committed before the kill: {done_before_kill} of {total}")
