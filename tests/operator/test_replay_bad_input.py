"""Operator mistakes with replay, bootstrap, status, trace and lag: one clear line, a non-zero exit, nothing changed."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from operator_kit import People, write_agreements
from typer.testing import CliRunner

from onceonly.cli import app
from onceonly.errors import ConfigError
from onceonly.publisher import Publisher
from onceonly.settings import Settings
from onceonly.testing import process_env
from services.distributor.reading import read_to_end
from services.operator.replay_errors import (
    BadWindow,
    DistributorNotReady,
    NoAgreement,
    NothingToReplay,
    UnknownEvent,
    UnknownKey,
)

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [["replay"], ["holder", "bootstrap"], ["holder", "operations"], ["status"], ["trace"], ["lag"]],
)
def test_every_command_has_an_example(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Example:" in result.output, result.output


@pytest.fixture(scope="module")
def world(module_topics: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """30 people recorded at public security (no distributor: replay reads the change topics itself)."""
    folder = tmp_path_factory.mktemp("bad-input")
    people = People(seed=11)
    with Publisher(module_topics) as publisher:
        people.publish(publisher, people.born(30))
    time.sleep(0.01)  # so "now" is after every record's timestamp (milliseconds)
    yield {
        "settings": module_topics,
        "config": str(write_agreements(folder / "agreements.yaml", ["hrss", "tax"])),
        "people": people,
        "after_last": datetime.now(UTC),
    }


def run(world: dict[str, Any], *args: str) -> Any:
    env = process_env(world["settings"], ONCEONLY_REDIS_URL=world["settings"].redis_url or "", COLUMNS="200")
    return runner.invoke(app, list(args), env=env)


def untouched(settings: Settings) -> None:
    """No inbox record, no replay ledger entry, no lock left behind."""
    import redis

    for name in ("inbox.tax", "inbox.hrss", "audit.replays"):
        topic = settings.topic(name)
        parts = {(topic, p): 0 for p in range(3 if name.startswith("inbox") else 1)}
        assert not list(read_to_end(settings, parts)), f"{name} was written"
    client = redis.Redis.from_url(settings.redis_url or "")
    assert not list(client.scan_iter(f"{settings.topic_prefix}lock:*"))
    client.close()


def _future() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="seconds")


CASES: list[tuple[str, list[str], type[Exception], str]] = [
    ("unknown holder", ["--holder", "nobody", "--by-duration", "1h"], ConfigError, "unknown department 'nobody'"),
    ("no agreement", ["--holder", "health", "--by-duration", "1h"], NoAgreement, "no agreement in"),
    ("entity not granted", ["--holder", "tax", "--by-duration", "1h", "--entity", "death"], NoAgreement, "not granted"),
    ("start in the future", ["--holder", "tax", "--from", "FUTURE"], BadWindow, "is in the future"),
    ("end in the future", ["--holder", "tax", "--by-duration", "1h", "--to", "FUTURE"], BadWindow, "is in the future"),
    ("end before start", ["--holder", "tax", "--from", "2025-06-02", "--to", "2025-06-01"], BadWindow, "is not after"),
    ("bad duration", ["--holder", "tax", "--by-duration", "2 fortnights"], BadWindow, "is not a duration"),
    ("bad time", ["--holder", "tax", "--from", "yesterday"], BadWindow, "is not a time"),
    ("two starts", ["--holder", "tax", "--from", "2025-06-01", "--by-duration", "1h"], BadWindow, "give one"),
    ("no start", ["--holder", "tax"], BadWindow, "say where the replay starts"),
    ("empty window", ["--holder", "hrss", "--from", "AFTER_LAST"], NothingToReplay, "nothing to replay to hrss: no"),
    ("offset past the end", ["--holder", "hrss", "--from-offset", "100000"], NothingToReplay, "nothing to replay"),
    ("unknown key", ["--holder", "hrss", "--by-duration", "1h", "--key", "KEY0"], UnknownKey, "no change topic holds"),
]


@pytest.mark.parametrize(("case", "args", "error", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_replay_mistake_is_one_clear_error_and_changes_nothing(
    world: dict[str, Any], case: str, args: list[str], error: type[Exception], words: str
) -> None:
    values = {"FUTURE": _future(), "AFTER_LAST": world["after_last"].isoformat(), "KEY0": "110105199901019999"}
    args = [values.get(a, a) for a in args]
    result = run(world, "replay", *args, "-c", world["config"])
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, error), (case, result.exception)
    assert words in str(result.exception), str(result.exception)
    assert "\n" not in str(result.exception)
    untouched(world["settings"])  # each case on its own: no inbox record, no ledger entry, no lock left behind


def test_a_window_with_changes_only_out_of_scope_says_why(world: dict[str, Any]) -> None:
    """Tax only gets three districts: a key of another district has changes, none for tax."""
    people: People = world["people"]
    other = next(c for c in people.log if c["after"]["district_code"] not in ("110101", "110105", "110108"))
    result = run(world, "replay", "--holder", "tax", "--key", other["entity_key"], "-c", world["config"])
    assert isinstance(result.exception, NothingToReplay), result.output
    assert "none of its business" in str(result.exception)
    untouched(world["settings"])


def test_the_mistake_reaches_the_shell_as_one_line_and_an_exit_code(world: dict[str, Any]) -> None:
    command = [
        sys.executable,
        "-m",
        "onceonly",
        "replay",
        "--holder",
        "tax",
        "--from",
        _future(),
        "-c",
        world["config"],
    ]
    env = process_env(world["settings"], ONCEONLY_REDIS_URL=world["settings"].redis_url or "")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --from ") and "is in the future" in lines[0], lines


def test_dry_run_prints_the_plan_and_sends_nothing(world: dict[str, Any]) -> None:
    result = run(world, "replay", "--holder", "hrss", "--by-duration", "1h", "--dry-run", "-c", world["config"])
    assert result.exit_code == 0, (result.output, result.exception)
    topic = world["settings"].topic("change.person")
    assert "30 changes to deliver" in result.stdout and topic in result.stdout and "30 keys:" in result.stdout
    untouched(world["settings"])


def test_bootstrap_refuses_while_the_distributor_does_not_deliver_to_the_holder(world: dict[str, Any]) -> None:
    result = run(world, "holder", "bootstrap", "hrss", "-c", world["config"])
    assert isinstance(result.exception, DistributorNotReady), result.output
    assert "the distributor does not deliver to hrss yet" in str(result.exception)
    plan = run(world, "holder", "bootstrap", "hrss", "--dry-run", "-c", world["config"])
    # No distributor ran, so there is no state yet either (the distributor writes it).
    assert plan.exit_code == 0 and "0 to deliver" in plan.stdout and "does not deliver to hrss yet" in plan.stdout
    unknown = run(world, "holder", "bootstrap", "nobody", "-c", world["config"])
    assert isinstance(unknown.exception, ConfigError) and "unknown department 'nobody'" in str(unknown.exception)
    untouched(world["settings"])


def test_status_trace_and_lag_mistakes(world: dict[str, Any]) -> None:
    status = run(world, "status", "00000000-0000-0000-0000-000000000000")
    assert isinstance(status.exception, UnknownEvent) and "is unknown" in str(status.exception)
    trace = run(world, "trace", "--key", "110105199901019999")
    assert isinstance(trace.exception, UnknownEvent) and "nothing about person" in str(trace.exception)
    wrong_type = run(world, "trace", "--key", "x", "--type", "spaceship")
    assert isinstance(wrong_type.exception, ConfigError) and "unknown entity type" in str(wrong_type.exception)
    lag = run(world, "lag", "--holder", "nobody")
    assert isinstance(lag.exception, ConfigError) and "unknown department 'nobody'" in str(lag.exception)
    missing = run(world, "replay", "--holder", "tax", "--by-duration", "1h", "-c", str(Path("no-such.yaml")))
    assert isinstance(missing.exception, ConfigError) and "no-such.yaml: file not found" in str(missing.exception)
    untouched(world["settings"])
