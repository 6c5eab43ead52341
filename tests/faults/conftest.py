"""The fault table: one row per fault the suite ran, printed at the end of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fault_kit import FaultRow
from fault_pipeline import Pipeline

FAULT_ROWS = pytest.StashKey[list[FaultRow]]()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Pipeline]:
    """A whole pipeline per test module, started and converged on its first registrations, stopped afterwards."""
    p = Pipeline(tmp_path_factory.mktemp("faults"), postgres_url)
    try:
        p.start()
        yield p
    finally:
        p.close()


@pytest.fixture(scope="session")
def fault_table(request: pytest.FixtureRequest) -> list[FaultRow]:
    """Rows the fault tests append to; ``pytest_terminal_summary`` prints them."""
    return request.config.stash.setdefault(FAULT_ROWS, [])


def _seconds(value: float | None) -> str:
    return "not recovered" if value is None else f"{value:.1f}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(FAULT_ROWS, [])
    if not rows:
        return
    header = ("fault", "in flight", "lost", "applied twice", "dead letters", "crashes", "outage s", "time to recover s")
    cells = [
        (
            r.fault,
            str(r.in_flight),
            str(r.lost),
            str(r.applied_twice),
            r.dead_letters,
            str(r.crashes),
            f"{r.outage_s:.1f}",
            _seconds(r.recover_s),
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
        if row.note:
            terminalreporter.write_line(f"    {row.note}")
    terminalreporter.write_line(
        "in flight: the authority's changes not yet applied at every holder entitled to them when the fault hit, "
        "plus those recorded during it; lost: entitled (holder, change) pairs without a receipt, changes "
        "dead-lettered, and rows differing from the authority's state after recovery; applied twice: event ids "
        "written twice per the stores' own triggers, plus duplicate 'applied' receipts; crashes: services that exited "
        "by themselves (started again, as compose or Kubernetes would); time to recover: from the "
        "end of the fault until every holder, the dead-letter topics and the tracker's Redis were right."
    )
