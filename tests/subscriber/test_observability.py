"""A distributor and a subscriber as the processes operators run: what /metrics says per holder, and that the JSON
log line about a dead letter names the change (event id) and the holder, so an operator can search for it."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from distributor.distributor_kit import Kafka, person, person_id, spawn_distributor, wait_for, write_agreements
from subscriber_kit import HOLDER, Broker, spawn_subscriber, write_config

from onceonly.stack.process import free_port
from onceonly.testing import Samples, prometheus_samples, sample

pytestmark = pytest.mark.broker

AGREEMENT = {
    "id": "gjj-all",
    "holder": HOLDER,
    "purpose": "provident fund accounts",
    "legal_basis": "Regulations on the Administration of Housing Provident Fund, art. 13",
    "valid_from": "2020-01-01",
    "interest": "all",
    "grants": {"person": ["id_number", "name", "address", "district_code"]},
}


def scrape(port: int) -> Samples:
    """Every sample a service's /metrics serves (empty while it is not listening yet)."""
    try:
        return prometheus_samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    except httpx.TransportError:
        return {}


def json_lines(log: Path) -> list[dict[str, Any]]:
    """The service's log; every line must be a JSON object (stderr is a file, so ``auto`` means JSON)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def stop(*processes: subprocess.Popen[bytes]) -> list[int]:
    for proc in processes:
        proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in processes:
        try:
            codes.append(proc.wait(15))
        finally:
            proc.kill()
    return codes


def test_metrics_per_holder_and_change_identity_on_every_log_line_about_a_change(
    sqlite_store: str, broker: Broker, tmp_path: Path
) -> None:
    settings = broker.settings
    kafka = Kafka(settings)
    good = [person(person_id(i)) for i in range(2)]
    newer, late = person(person_id(7), 2), person(person_id(7), 1)  # v1 after v2: distributed late, skipped stale
    poison = person(person_id(8), district_code="000000")  # the fund's CHECK constraint refuses it: a dead letter
    kafka.publish(*good, newer, late, poison)
    kafka.raw(settings.topic("change.person"), b"junk", b"not a framed record")  # the distributor's dead letter
    kafka.flush()

    agreements = write_agreements(tmp_path / "agreements.yaml", [AGREEMENT])
    config = write_config(tmp_path / "onceonly.yaml", sqlite_store, source_topic="inbox.housing_fund")
    d_port, s_port = free_port(), free_port()
    d_log, s_log = tmp_path / "distributor.log", tmp_path / "subscriber.log"
    distributor = spawn_distributor(agreements, settings, d_log, "--metrics-port", str(d_port))
    subscriber = spawn_subscriber(config, settings, s_log, "--metrics-port", str(s_port))
    inbox, change_person = settings.topic(f"inbox.{HOLDER}"), settings.topic("change.person")
    d_lag = {"group": settings.topic("distributor"), "topic": change_person}
    s_lag = {"group": settings.topic(f"subscriber.{HOLDER}"), "topic": inbox}
    seen: dict[str, Samples] = {}
    try:

        def all_decided_and_no_lag() -> bool:
            seen["d"], seen["s"] = d, s = scrape(d_port), scrape(s_port)
            decided = sum(
                sample(s, "onceonly_changes_applied_total", holder=HOLDER, outcome=o) or 0
                for o in ("applied", "skipped_stale", "dead_lettered")
            )
            return (
                decided == 5
                and sample(d, "onceonly_consumer_lag", **d_lag) == sample(s, "onceonly_consumer_lag", **s_lag) == 0
            )

        wait_for(all_decided_and_no_lag, 25, "every change decided and both services reporting no lag", every=0.3)
    finally:
        codes = stop(distributor, subscriber)
    assert codes == [0, 0], (d_log.read_text()[-2000:], s_log.read_text()[-2000:])
    d, s = seen["d"], seen["s"]

    # distributor: delivered per holder, its dead letter, its rebalance (its lag gauge was waited for above)
    assert sample(d, "onceonly_changes_delivered_total", holder=HOLDER, entity_type="person") == 5
    assert sample(d, "onceonly_dead_letters_total", service="distributor", holder="") == 1
    assert (sample(d, "onceonly_consumer_rebalances_total", service="distributor") or 0) >= 1
    # subscriber: outcomes per holder, propagation of what was applied, its rebalance
    assert sample(s, "onceonly_changes_applied_total", holder=HOLDER, outcome="applied") == 3
    assert sample(s, "onceonly_changes_applied_total", holder=HOLDER, outcome="skipped_stale") == 1
    assert sample(s, "onceonly_changes_applied_total", holder=HOLDER, outcome="dead_lettered") == 1
    assert sample(s, "onceonly_dead_letters_total", service="subscriber", holder=HOLDER) == 1
    assert sample(s, "onceonly_propagation_seconds_count", holder=HOLDER) == 3
    assert (sample(s, "onceonly_consumer_rebalances_total", service=f"subscriber.{HOLDER}") or 0) >= 1

    s_lines = json_lines(s_log)
    [letter] = [doc for doc in s_lines if doc.get("outcome") == "dead_lettered"]
    assert letter["level"] == "WARNING" and "CHECK" in letter["message"].upper(), letter
    assert (letter["event_id"], letter["holder"]) == (poison["event_id"], HOLDER)
    assert letter["topic"] == inbox and isinstance(letter["partition"], int) and isinstance(letter["offset"], int)
    assigned = [doc for doc in s_lines if "assigned" in doc["message"]]
    assert assigned and all(doc["holder"] == HOLDER for doc in assigned), "the worker's context names its holder"

    d_lines = json_lines(d_log)
    [junk] = [doc for doc in d_lines if doc["message"].startswith("dead letter")]
    assert junk["topic"] == settings.topic("change.person") and isinstance(junk["offset"], int)
    assert junk["event_id"] is None and junk["holder"] is None  # undecodable: no event id, meant for no holder yet
    [late_line] = [doc for doc in d_lines if "arrived after a newer version" in doc["message"]]
    assert (late_line["event_id"], late_line["holder"]) == (late["event_id"], HOLDER)
