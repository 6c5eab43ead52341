"""The fault table printed at the end of the session, also under pytest-xdist.

A plugin of the root conftest (``pytest_plugins``), not of ``tests/faults/conftest.py``: under xdist the
controller never collects ``tests/faults``, so a hook there would not run where the summary is printed. The rows
are appended in whichever process runs the fault tests; a worker hands them to the controller in its
``workeroutput`` at session finish, and the controller gathers them as each worker goes down.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

FAULT_ROWS = pytest.StashKey[list[Any]]()  # FaultRow where the tests ran; plain dicts gathered from workers
WORKER_KEY = "onceonly_fault_rows"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In an xdist worker: hand the rows to the controller (xdist sends ``workeroutput`` after this hook)."""
    output = getattr(session.config, "workeroutput", None)
    rows = session.config.stash.get(FAULT_ROWS, [])
    if output is not None and rows:
        output[WORKER_KEY] = [_plain(r) for r in rows]  # execnet carries only builtin types


@pytest.hookimpl(optionalhook=True)  # an xdist hook: without xdist it is never called
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the controller: gather a finished worker's rows (none when it crashed before finishing)."""
    rows = getattr(node, "workeroutput", {}).get(WORKER_KEY, [])
    if rows:
        node.config.stash.setdefault(FAULT_ROWS, []).extend(rows)


def _plain(row: Any) -> dict[str, Any]:
    return row if isinstance(row, dict) else dataclasses.asdict(row)


def _seconds(value: float | None) -> str:
    return "not recovered" if value is None else f"{value:.1f}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workeroutput"):
        return  # a worker's terminal goes nowhere; the controller prints
    rows = [_plain(r) for r in config.stash.get(FAULT_ROWS, [])]
    if not rows:
        return
    header = ("fault", "in flight", "lost", "applied twice", "dead letters", "crashes", "outage s", "time to recover s")
    cells = [
        (
            r["fault"],
            str(r["in_flight"]),
            str(r["lost"]),
            str(r["applied_twice"]),
            r["dead_letters"],
            str(r["crashes"]),
            f"{r['outage_s']:.1f}",
            _seconds(r["recover_s"]),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]

    def line(values: tuple[str, ...]) -> str:
        padded = (v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True)))
        return "  ".join(padded)

    terminalreporter.write_sep("=", "whole-pipeline fault suite")
    terminalreporter.write_line(line(header))
    terminalreporter.write_line("  ".join("-" * w for w in widths))
    for row, values in zip(rows, cells, strict=True):
        terminalreporter.write_line(line(values))
        if row["note"]:
            terminalreporter.write_line(f"    {row['note']}")
    terminalreporter.write_line(
        "in flight: the authority's changes not yet applied at every holder entitled to them when the fault hit, "
        "plus those recorded during it; lost: entitled (holder, change) pairs without a receipt, changes "
        "dead-lettered, and rows differing from the authority's state after recovery; applied twice: event ids "
        "written twice per the stores' own triggers, plus duplicate 'applied' receipts; crashes: services that exited "
        "by themselves (started again, as compose or Kubernetes would); time to recover: from the "
        "end of the fault until every holder, the dead-letter topics and the tracker's Redis were right."
    )
