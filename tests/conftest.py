"""Suite-wide fixtures: the session broker and friends come from ``onceonly.testing``; this file adds the net under
them: whatever a failed test left running (a broker, a registry that came up too late) is stopped at the end, so
it cannot slow or disturb the next run on the same machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psutil
import pytest


def _forget_terminal_size() -> None:
    """The CLI's rich consoles are made at import and keep the ``COLUMNS``/``LINES`` they saw then, overriding the
    width each test passes to ``CliRunner.invoke``. pytest imports readline at start-up, and GNU readline exports
    ``COLUMNS=80 LINES=24`` when not on a terminal; xdist workers inherited them and cut the tables' columns to "…".
    Removed before any test module imports the CLI, so a worker, a serial run and any terminal render alike."""
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
        os.unsetenv(name)  # also the C-level copy readline set, which subprocesses would inherit


_forget_terminal_size()

# fault_table: the fault suite's summary, here so that xdist's controller (which never collects tests/faults) has it
pytest_plugins = ["onceonly.testing", "faults.fault_table"]


@pytest.fixture(scope="session", autouse=True)
def no_processes_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    left = [p for p in psutil.Process().children(recursive=True) if p.is_running()]
    names = ", ".join(sorted({_name(p) for p in left}))
    for p in left:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(left, timeout=5)
    for p in alive:
        p.kill()
    if left:
        _tell(request.config, f"stopped {len(left)} processes the tests left running: {names}")


LEFT_RUNNING = pytest.StashKey[list[str]]()
WORKER_KEY = "onceonly_left_running"


def _tell(config: pytest.Config, line: str) -> None:
    """Keep a line for the end of the session's summary: written now it would land in the last test's captured
    teardown (and an xdist worker's stdout is /dev/null); a worker sends it to the controller instead."""
    output = getattr(config, "workeroutput", None)
    if output is not None:  # xdist sends it to the controller after the session's fixtures are torn down
        worker = getattr(config, "workerinput", {}).get("workerid", "worker")
        output.setdefault(WORKER_KEY, []).append(f"[{worker}] {line}")
    else:
        config.stash.setdefault(LEFT_RUNNING, []).append(line)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: without xdist it is never called
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the controller: keep what a finished worker had to say for the summary."""
    node.config.stash.setdefault(LEFT_RUNNING, []).extend(getattr(node, "workeroutput", {}).get(WORKER_KEY, []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in terminalreporter.config.stash.get(LEFT_RUNNING, []):
        terminalreporter.write_line(line)


def _name(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline()[:3])[:80]
    except psutil.Error:
        return str(p.pid)
