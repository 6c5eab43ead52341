"""The broker restarted under load, on a pipeline of its own (issue #9).

Its own pipeline, because a broker that loses records it acknowledged would spoil every fault after it, and
because the time a restart takes grows with what the broker holds (Tansu on s3:// re-reads its state from S3).
"""

from __future__ import annotations

import time

import pytest
from fault_kit import FaultRow
from fault_pipeline import Pipeline, record

from services.distributor import LedgerBroken
from services.distributor.audit import verify_ledger

pytestmark = pytest.mark.faults


def test_broker_restart(pipeline: Pipeline, fault_table: list[FaultRow]) -> None:
    """Stop and start Tansu on the same port while everything runs (``EmbeddedStack.restart_broker``: SIGTERM, then
    a new broker on the same s3:// storage). Data, committed offsets and producer state survive a restart.

    Measured here (Tansu v0.6.0-510f3e2 on moto): after SIGTERM the broker keeps serving for about 5 s, and a batch
    an idempotent producer had in flight at the stop can be acknowledged after the restart (as a duplicate
    sequence: no offset in the delivery report) and yet be missing from the log; non-idempotent producers lose
    nothing in the same experiment. Every service here produces idempotently. When that is the only reason
    something is missing, and the topics and stores prove it record by record (``Pipeline.explain``), the test is
    an expected failure naming what the broker lost; any loss the broker does not explain fails it.
    """

    def act() -> None:
        pipeline.stack.restart_broker()

    # 12 s without a receipt: the broker lost something (or the services are still rejoining, then wait on below).
    row, verdict = pipeline.phase("broker restart", act, stall=12.0)
    if verdict.converged:
        record(fault_table, (row, verdict))
        return
    explained, unexplained = pipeline.explain(verdict)
    if unexplained:  # not only the broker's doing, or not yet: give the pipeline all the time a fault gets
        recovered, verdict = pipeline.converge(60.0)
        in_db, in_receipts = pipeline.applied_twice()  # this module's pipeline saw no other fault
        row.lost, row.applied_twice = verdict.lost, len(in_db) + len(in_receipts)
        if recovered is not None:
            row.recover_s = time.monotonic() - pipeline.healed_at
            record(fault_table, (row, verdict))
            return
        explained, unexplained = pipeline.explain(verdict)
    try:
        verify_ledger(pipeline.s)
    except LedgerBroken as e:  # the distributor commits only after its ledger entries were acknowledged
        explained.append(f"delivery ledger: {e}")
    row.note = f"the broker lost {len(explained)} acknowledged records: " + "; ".join(explained)[:300]
    if unexplained:
        row.note += f"; NOT explained by the broker: {'; '.join(unexplained)[:300]}"
    fault_table.append(row)
    assert not unexplained, f"broker restart: lost beyond what the broker lost: {unexplained}"
    assert row.applied_twice == 0, f"broker restart: {row.applied_twice} changes applied twice"
    pytest.xfail(f"Tansu lost {len(explained)} records it had acknowledged, across the restart: {explained}")
