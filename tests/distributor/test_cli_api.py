"""The command line and the inbox-side HTTP API: examples in --help, one-line errors, interest kept in Kafka."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from onceonly.cli import app
from onceonly.settings import Settings
from onceonly.testing import process_env


@pytest.mark.parametrize(
    "command",
    [
        ["distributor", "run"],
        ["distributor", "check"],
        ["audit", "verify"],
        ["audit", "export"],
        ["audit", "show"],
        ["interest", "register"],
        ["interest", "end"],
        ["interest", "list"],
        ["interest", "serve"],
    ],
)
def test_every_command_has_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Example:" in result.output, result.output


@pytest.mark.broker
def test_running_without_the_topics_is_one_clear_line(settings: Settings, tmp_path: Path) -> None:
    from onceonly.catalog import schema_dir

    command = [sys.executable, "-m", "onceonly", "distributor", "run", str(schema_dir() / "agreements.yaml")]
    command += ["--state-dir", str(tmp_path)]
    result = subprocess.run(command, env=process_env(settings), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: topic") and "does not exist" in last and "onceonly topics apply" in last


@pytest.mark.broker
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")  # FastAPI's test client, not ours
def test_interest_by_cli_and_by_http_is_kept_on_the_interest_topic(topics: Settings, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from services.distributor.api import create_app

    runner = CliRunner()
    env = process_env(topics, ONCEONLY_STATE_DIR=str(tmp_path), COLUMNS="200")
    key = "11010519491231002X"
    registered = runner.invoke(
        app, ["interest", "register", "housing_fund", "person", key, "--reason", "acct 7"], env=env
    )
    assert registered.exit_code == 0, registered.output
    client = TestClient(create_app(topics))
    assert client.post("/interest/tax/person/110105198001020011").status_code == 202
    bad = client.post("/interest/nobody/person/110105198001020011")
    assert bad.status_code == 400 and "unknown department 'nobody'" in bad.json()["detail"]
    assert client.get("/interest/tax").json() == [{"entity_type": "person", "entity_key": "110105198001020011"}]
    listing = runner.invoke(app, ["interest", "list"], env=env)
    assert key in listing.output and "110105198001020011" in listing.output
    assert client.delete("/interest/tax/person/110105198001020011").status_code == 202
    assert client.get("/interest/tax").json() == []
    wrong = runner.invoke(app, ["interest", "register", "housing_fund", "spaceship", key], env=env)
    assert wrong.exit_code != 0 and "unknown entity type 'spaceship'" in str(wrong.exception)
