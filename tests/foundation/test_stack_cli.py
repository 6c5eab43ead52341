"""`onceonly stack up|status|down` as a user runs it, twice, and its bad inputs."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from onceonly.stack.process import free_port, port_open


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    return subprocess.run(
        [sys.executable, "-m", "onceonly", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
    )


def ports() -> list[str]:
    return ["--broker-port", str(free_port()), "--registry-port", str(free_port())]


def children_of_stack(state: Path) -> list[int]:
    """Pids of live processes whose command line mentions the stack's state folder or ports we used."""
    return [p.pid for p in psutil.process_iter(["cmdline"]) if str(state) in " ".join(p.info["cmdline"] or [])]


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    s = tmp_path / "state"
    yield s
    run("stack", "down", "--state-dir", str(s))


def test_up_status_down_twice_leaves_nothing_running(state: Path) -> None:
    for _ in range(2):
        up = run("stack", "up", "--state-dir", str(state), *ports())
        assert up.returncode == 0, up.stderr
        assert "ONCEONLY_BOOTSTRAP_SERVERS=127.0.0.1:" in up.stdout
        env_file = (state / "stack.env").read_text()
        for key in ("ONCEONLY_BOOTSTRAP_SERVERS", "ONCEONLY_REGISTRY_URL", "ONCEONLY_REDIS_URL"):
            assert key in env_file
        again = run("stack", "up", "--state-dir", str(state))
        assert again.returncode == 0 and "already running" in again.stdout
        status = run("stack", "status", "--state-dir", str(state))
        assert status.returncode == 0, status.stdout
        for part in ("broker", "registry", "redis"):
            assert part in status.stdout
        assert "healthy" in status.stdout
        pids = [int(line) for line in _recorded_pids(state)]
        assert all(psutil.pid_exists(p) for p in pids)
        down = run("stack", "down", "--state-dir", str(state))
        assert down.returncode == 0 and "stopped" in down.stdout
        assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert not (state / "stack.json").exists()
    assert run("stack", "status", "--state-dir", str(state)).returncode == 1


def _recorded_pids(state: Path) -> list[str]:
    import json

    return [str(c["pid"]) for c in json.loads((state / "stack.json").read_text())["components"]]


def test_down_leaves_other_files_alone(state: Path) -> None:
    state.mkdir(parents=True)
    mine = state / "keep.txt"
    mine.write_text("not the stack's")
    assert run("stack", "up", "--state-dir", str(state), *ports()).returncode == 0
    assert run("stack", "down", "--state-dir", str(state)).returncode == 0
    assert mine.read_text() == "not the stack's"


def test_port_taken_is_one_clear_line_and_nothing_half_started(state: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port, broker_port = held.getsockname()[1], free_port()
        result = run(
            "stack", "up", "--state-dir", str(state), "--registry-port", str(port), "--broker-port", str(broker_port)
        )
    assert result.returncode != 0
    assert not port_open("127.0.0.1", broker_port), "the broker started before the refusal was left running"
    assert f"port {port} for the schema registry is already taken" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (state / "stack.json").exists()
    assert children_of_stack(state) == []


def test_missing_broker_binary(state: Path) -> None:
    result = run(
        "stack", "up", "--state-dir", str(state), *ports(), env={"ONCEONLY_TANSU_BIN": str(state / "no-such-tansu")}
    )
    assert result.returncode != 0
    assert "is not an executable file" in result.stderr and "Traceback" not in result.stderr


def test_broker_that_never_comes_up(state: Path, tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'storage engine refused' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    result = run("stack", "up", "--state-dir", str(state), *ports(), env={"ONCEONLY_TANSU_BIN": str(fake)})
    assert result.returncode != 0
    assert "the broker did not come up" in result.stderr and "storage engine refused" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (state / "stack.json").exists()


@pytest.mark.parametrize("module", ["moto", "flask"])
def test_s3_storage_without_moto_is_one_clear_line(state: Path, module: str) -> None:
    """`--storage s3` where the embedded extra was not installed: said before anything starts, naming the fix."""
    hide = f"import sys; sys.modules[{module!r}] = None; from onceonly.cli import main; main()"  # as if not installed
    base = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    args = ["stack", "up", "--state-dir", str(state), "--storage", "s3", *ports()]
    result = subprocess.run([sys.executable, "-c", hide, *args], capture_output=True, text=True, timeout=60, env=base)
    assert result.returncode != 0
    assert f"--storage s3 needs the moto S3 server, and the module {module} is not installed" in result.stderr
    assert "pip install 'onceonly[embedded]'" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (state / "stack.json").exists()
    assert children_of_stack(state) == []
