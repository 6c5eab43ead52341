"""The fault suite's pipeline, and the table its tests append to (printed by ``fault_table``, a root plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fault_kit import FaultRow
from fault_pipeline import Pipeline
from faults.fault_table import FAULT_ROWS


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
    """Rows the fault tests append to; printed at the end of the session (by the controller under xdist)."""
    rows: list[FaultRow] = request.config.stash.setdefault(FAULT_ROWS, [])
    return rows
