"""``onceonly source run|check``: the connectors that turn department systems into change events."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from onceonly.cli.common import StateDir, cli_settings, console, start_service
from onceonly.settings import DEFAULT_STATE_DIR

app = typer.Typer(help="Run source connectors: outbox tables and snapshot diffs.", no_args_is_help=True)

ConfigFile = Annotated[Path, typer.Argument(help="onceonly.yaml with a 'sources' section")]
SourceName = Annotated[str | None, typer.Option("--source", "-s", help="run only this source (default: all)")]


@app.command()
def run(
    config: ConfigFile,
    source: SourceName = None,
    once: Annotated[bool, typer.Option("--once", help="publish what is pending now, then exit")] = False,
    metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus metrics on this port")] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Run the sources until SIGTERM or Ctrl-C; each publishes in order and marks rows sent only after the ack.

    A killed source loses nothing: started again, it re-sends what was not acknowledged, with the same event ids.

    Example:  onceonly source run onceonly.yaml --source hukou-outbox
    """
    from connectors.sources import load_sources, run_sources

    settings = cli_settings(state_dir)
    selected = load_sources(config).select(source)
    start_service(settings, metrics_port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    reports = run_sources(selected, settings, stop, once=once)
    for name, report in reports.items():
        console.print(f"{name}: {report.published} published, {report.rejected} dead-lettered", highlight=False)


@app.command()
def check(config: ConfigFile, source: SourceName = None, state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Check the configuration and show what each source would publish now, without publishing.

    Example:  onceonly source check onceonly.yaml
    """
    from connectors.sources import OutboxSource, SnapshotSource, diff, load_sources
    from connectors.sources.supervise import build_source
    from onceonly.publisher import Publisher

    settings = cli_settings(state_dir)
    table = Table("source", "kind", "department", "waiting to publish")
    with Publisher(settings, delivery_timeout=5.0) as publisher:
        for cfg in load_sources(config).select(source):
            built = build_source(cfg, publisher, settings)
            built.open()
            try:
                if isinstance(built, OutboxSource):
                    waiting = f"{built.pending()} outbox rows"
                else:
                    assert isinstance(built, SnapshotSource) and built.state is not None
                    current, unreadable = built.read()
                    emits = diff(current, built.state.known(), unreadable=unreadable)
                    counts = {op: sum(1 for e in emits if e.op == op) for op in ("c", "u", "d")}
                    waiting = f"{counts['c']} created, {counts['u']} updated, {counts['d']} deleted"
            finally:
                built.close()
            table.add_row(cfg.name, built.kind, cfg.department, waiting)
    console.print(table)
