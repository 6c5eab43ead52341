"""Sinks: change events into a holder's own store (SQL tables, a webhook, files), idempotently and in order.

from connectors.sinks import Change, build_sink
sink = build_sink(config, delete_policy="mark")
sink.open()
results = sink.apply(changes)   # one Result per change: applied, skipped_duplicate, skipped_stale, dead_lettered
"""

from __future__ import annotations

from pathlib import Path

from connectors.sinks.base import OUTCOMES, Outcome, Result, Sink
from connectors.sinks.change import Change
from connectors.sinks.config import EndMapping, FileSinkConfig, HttpSinkConfig, SinkConfig, SqlSinkConfig, TableMapping
from connectors.sinks.errors import MalformedChange, MappingError, RecordRejected, SinkError, TransientSinkError
from connectors.sinks.files import FileSink
from connectors.sinks.guard import Decision, Watermark, decide, guard
from connectors.sinks.plan import DeletePolicy, Step, plan
from connectors.sinks.sql import SqlSink
from connectors.sinks.webhook import HttpSink

__all__ = [
    "OUTCOMES",
    "Change",
    "Decision",
    "DeletePolicy",
    "EndMapping",
    "FileSink",
    "FileSinkConfig",
    "HttpSink",
    "HttpSinkConfig",
    "MalformedChange",
    "MappingError",
    "Outcome",
    "RecordRejected",
    "Result",
    "Sink",
    "SinkConfig",
    "SinkError",
    "SqlSink",
    "SqlSinkConfig",
    "Step",
    "TableMapping",
    "TransientSinkError",
    "Watermark",
    "build_sink",
    "decide",
    "guard",
    "plan",
]


def build_sink(
    config: SqlSinkConfig | HttpSinkConfig | FileSinkConfig,
    *,
    delete_policy: DeletePolicy,
    holder: str = "",
    state_dir: Path | None = None,
) -> Sink:
    """The sink for a configuration (not yet opened). An http sink keeps its watermarks, unless ``watermark_url``
    says where, in ``<state_dir>/subscribers/<holder>.sqlite`` (``state_dir`` default: the settings'); the
    subscriber names the holder ``<topic prefix><dept>``, as its consumer group, so deployments never share one."""
    if isinstance(config, SqlSinkConfig):
        return SqlSink(config, delete_policy=delete_policy)
    if isinstance(config, HttpSinkConfig):
        return HttpSink(config, delete_policy=delete_policy, holder=holder, state_dir=state_dir)
    return FileSink(config, delete_policy=delete_policy)
