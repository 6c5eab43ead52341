"""Sources: department systems into change events (outbox rows, table or export snapshots).

from connectors.sources import load_sources, run_sources
run_sources(load_sources(Path("onceonly.yaml")).select(None), settings, stop_event)
"""

from __future__ import annotations

from connectors.sources.config import (
    CsvInput,
    OutboxSourceConfig,
    SnapshotSourceConfig,
    SourcesConfig,
    SqlInput,
    load_sources,
)
from connectors.sources.outbox import OutboxSource
from connectors.sources.outbox_tables import create_outbox, dead_letter_table, outbox_table
from connectors.sources.runner import TRANSIENT, Backoff, RunReport, Source, SourceRunner, Step
from connectors.sources.snapshot import SnapshotSource
from connectors.sources.snapshot_diff import Emit, Known, diff
from connectors.sources.snapshot_state import SnapshotState
from connectors.sources.supervise import build_source, run_source, run_sources

__all__ = [
    "TRANSIENT",
    "Backoff",
    "CsvInput",
    "Emit",
    "Known",
    "OutboxSource",
    "OutboxSourceConfig",
    "RunReport",
    "SnapshotSource",
    "SnapshotSourceConfig",
    "SnapshotState",
    "Source",
    "SourceRunner",
    "SourcesConfig",
    "SqlInput",
    "Step",
    "build_source",
    "create_outbox",
    "dead_letter_table",
    "diff",
    "load_sources",
    "outbox_table",
    "run_source",
    "run_sources",
]
