"""``onceonly source status``: real sources' heartbeats tell alive, quiet and dead apart; their dead letters shown."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer
from publisher.change_kit import person_change, person_id, read_topic
from source_kit import enterprise, insert_outbox, payload, running, uscc, write_csv
from typer.testing import CliRunner, Result

from connectors.sources import load_sources
from onceonly.cli import app
from onceonly.errors import ConfigError
from onceonly.kafka import confluent_producer_config
from onceonly.settings import Settings
from onceonly.testing import process_env
from services.operator.source_status import Beat, NoHeartbeats, judge

pytestmark = pytest.mark.broker
BEAT_S = 0.5


def status(settings: Settings, tmp_path: Path, *args: str) -> Result:
    env = process_env(settings, ONCEONLY_STATE_DIR=str(tmp_path / "state"), COLUMNS="250")
    return CliRunner().invoke(app, ["source", "status", *args], env=env)


def rows(result: Result) -> dict[str, dict[str, Any]]:
    return {r["source"]: r for r in json.loads(result.stdout)}


def two_sources(tmp_path: Path) -> Path:
    """An outbox with three good rows and a broken one; a CSV export with a good row and a bad check character."""
    url = f"sqlite:///{tmp_path / 'hukou.db'}"
    good = [("person", person_id(k), payload(person_change(person_id(k)))) for k in range(3)]
    insert_outbox(url, [*good, ("person", person_id(7), "{broken")])
    write_csv(tmp_path / "export-1.csv", [enterprise(0), enterprise(9, uscc=uscc(9)[:-1] + "X")])
    beats = {"poll_interval": 0.1, "heartbeat_interval": BEAT_S}
    sources = {
        "hukou": {"kind": "outbox", "department": "public_security", "url": url, **beats},
        "scjg-export": {
            "kind": "snapshot",
            "department": "market_regulation",
            "entity_type": "enterprise",
            "input": {"kind": "csv", "path": str(tmp_path / "export-*.csv")},
            "state": str(tmp_path / "scjg.sqlite"),
            **beats,
        },
    }
    config = tmp_path / "onceonly.yaml"
    config.write_text(yaml.safe_dump({"sources": sources}))
    return config


def test_running_sources_are_quiet_with_their_dead_letters_and_stopped_ones_are_dead(
    topics: Settings, tmp_path: Path
) -> None:
    config = two_sources(tmp_path)
    hukou, export = load_sources(config).select(None)
    with running(hukou, topics), running(export, topics):
        # Each published what it could at its first look; a beat later both are quiet (nothing new to publish).
        deadline = time.monotonic() + 30
        while True:
            live = status(topics, tmp_path, str(config), "--json")
            seen = rows(live) if live.exit_code == 0 else {}
            if seen and all(r["state"] == "quiet" and r["published_total"] for r in seen.values()):
                break
            assert time.monotonic() < deadline, live.output
            time.sleep(0.2)
        table = status(topics, tmp_path, str(config))
    assert table.exit_code == 0, table.output
    assert (seen["hukou"]["published_total"], seen["scjg-export"]["published_total"]) == (3, 1)
    assert seen["hukou"]["dead_letters"] == 1 and "payload: not JSON" in seen["hukou"]["last_reasons"][0]
    assert seen["scjg-export"]["dead_letters"] == 1
    assert seen["scjg-export"]["last_reasons"][0].startswith(f"{uscc(9)[:-1]}X: after.uscc: ")
    assert all(r["age_s"] < 3 * BEAT_S and r["interval_s"] == BEAT_S for r in seen.values())
    assert "quiet" in table.stdout and "payload: not JSON" in table.stdout and "is dead" not in table.output

    # The first beat said what the source did at its first look; the later ones that it had nothing to do.
    beats = [json.loads(v) for k, v, _ in read_topic(topics, "source.heartbeats", expect=4) if k == "hukou"]
    assert (beats[0]["status"], beats[0]["published_total"]) == ("publishing", 3)
    assert {b["status"] for b in beats[1:]} == {"idle"}

    time.sleep(3 * BEAT_S + 0.5)  # stopped: no heartbeat for more than three intervals
    gone = status(topics, tmp_path, str(config))
    assert gone.exit_code == 1, gone.output
    assert "hukou is dead: no heartbeat for" in gone.output and "(expected every 0.5s)" in gone.output
    assert "scjg-export is dead" in gone.output
    # Without the config: every source seen on the topic, judged by the interval its heartbeats announce.
    assert status(topics, tmp_path).exit_code == 1
    patient = status(topics, tmp_path, "--dead-after", "1000", "--json")
    assert patient.exit_code == 0 and {r["state"] for r in rows(patient).values()} == {"quiet"}
    assert rows(patient)["hukou"]["dead_letters"] is None, "no config: its dead letters are not known"


def test_the_states_from_a_heartbeat() -> None:
    now = 1_000_000
    beat = Beat("s", "outbox", "public_security", "publishing", now - 20_000, 30.0, 5, 0, now - 20_000)
    assert judge(beat, interval_s=None, dead_after=3, now_ms=now) == ("alive", 20.0, 30.0)
    idle = replace(beat, status="idle")
    assert judge(idle, interval_s=None, dead_after=3, now_ms=now)[0] == "quiet"
    assert judge(idle, interval_s=None, dead_after=3, now_ms=now + 71_000)[0] == "dead"
    old = replace(beat, interval_s=None)  # written before beats said their interval
    assert judge(old, interval_s=5.0, dead_after=3, now_ms=now) == ("dead", 20.0, 5.0)
    assert judge(old, interval_s=None, dead_after=3, now_ms=now)[2] == 30.0
    assert judge(None, interval_s=5.0, dead_after=3, now_ms=now) == ("dead", None, 5.0)
    assert Beat.parse(b"not json") is None and Beat.parse(b'{"source": "x"}') is None


def test_no_heartbeats_a_source_that_never_ran_and_bad_input(topics: Settings, tmp_path: Path) -> None:
    producer = Producer(confluent_producer_config(topics))
    producer.produce(topics.topic("source.heartbeats"), key=b"junk", value=b"not a heartbeat")
    assert producer.flush(10) == 0

    nothing = status(topics, tmp_path)
    assert isinstance(nothing.exception, NoHeartbeats), nothing.output
    assert "no source has sent a heartbeat to" in str(nothing.exception)
    one = status(topics, tmp_path, "--source", "hukou")
    assert isinstance(one.exception, NoHeartbeats) and "source 'hukou' has not sent a heartbeat" in str(one.exception)

    config = two_sources(tmp_path)  # configured, never started: dead, and no dead-letter table written yet
    never = status(topics, tmp_path, str(config), "--json")
    assert never.exit_code == 1
    assert {(r["state"], r["last_heartbeat_ms"], r["dead_letters"]) for r in rows(never).values()} == {
        ("dead", None, None)
    }
    assert "hukou is dead: never sent a heartbeat" in never.output

    missing = status(topics, tmp_path, str(tmp_path / "missing.yaml"))
    assert isinstance(missing.exception, ConfigError) and "missing.yaml: file not found" in str(missing.exception)
    (tmp_path / "empty.yaml").write_text("subscribers: {}\n")
    empty = status(topics, tmp_path, str(tmp_path / "empty.yaml"))
    assert isinstance(empty.exception, ConfigError) and "no 'sources' section" in str(empty.exception)
    unknown = status(topics, tmp_path, str(config), "--source", "nobody")
    assert isinstance(unknown.exception, ConfigError) and "no source named 'nobody'" in str(unknown.exception)
    assert status(topics, tmp_path, "--dead-after", "0").exit_code == 2
