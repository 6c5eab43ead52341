"""``onceonly publish TOPIC --from-json FILE``: sends the good lines, lists the bad ones by line, exits 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from change_kit import person_change, person_id, read_topic
from typer.testing import CliRunner

from onceonly.cli import app
from onceonly.settings import Settings

pytestmark = pytest.mark.broker


@pytest.fixture
def cli_env(topics: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in {
        "ONCEONLY_BOOTSTRAP_SERVERS": topics.bootstrap_servers,
        "ONCEONLY_REGISTRY_URL": topics.registry_url,
        "ONCEONLY_TOPIC_PREFIX": topics.topic_prefix,
        "ONCEONLY_STATE_DIR": str(tmp_path / "state"),
    }.items():
        monkeypatch.setenv(name, value)
    return topics


def test_publish_sends_good_lines_and_reports_bad_ones_by_number(cli_env: Settings, tmp_path: Path) -> None:
    lines = [json.dumps(person_change(person_id(k))) for k in range(40)]
    lines.insert(5, "{not json")
    lines.insert(10, json.dumps(person_change(person_id(99), adress="x")))
    lines.insert(20, json.dumps({**person_change(person_id(98)), "entity_type": "enterprise"}))
    lines.insert(30, "")  # blank lines are skipped, not rejected
    path = tmp_path / "moves.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = CliRunner().invoke(app, ["publish", "change.person", "--from-json", str(path), "--batch-size", "16"])

    assert result.exit_code == 1, result.output
    assert "40 sent to" in result.output and "3 rejected" in result.output
    assert "│ 6 " in result.output and "not JSON" in result.output
    assert "│ 11 " in result.output and "after.adress" in result.output
    assert "│ 21 " in result.output and "does not belong on the person topic" in result.output
    assert len(read_topic(cli_env, "change.person", expect=40)) == 40


def test_all_good_exits_zero_and_dry_run_sends_nothing(cli_env: Settings, tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text("".join(json.dumps(person_change(person_id(k))) + "\n" for k in range(5)), encoding="utf-8")

    dry = CliRunner().invoke(app, ["publish", "person", "--from-json", str(path), "--dry-run"])
    assert dry.exit_code == 0 and "5 valid" in dry.output
    assert read_topic(cli_env, "change.person", expect=0, timeout=3) == []

    real = CliRunner().invoke(app, ["publish", "person", "--from-json", str(path)])
    assert real.exit_code == 0, real.output
    assert len(read_topic(cli_env, "change.person", expect=5)) == 5


def test_a_wrong_topic_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("{}\n")
    done = subprocess.run(
        [sys.executable, "-m", "onceonly", "publish", "inbox.tax", "--from-json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "inbox.tax is not a change topic" in done.stderr
