"""``onceonly source run|check|status``: the connectors that turn department systems into change events, and
whether each one is alive (its heartbeats) and what it dead-lettered."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from onceonly.cli.common import StateDir, cli_settings, console, start_service
from onceonly.settings import DEFAULT_STATE_DIR

app = typer.Typer(
    help="Run source connectors: outbox tables and snapshot diffs.\n\nExample:  onceonly source check onceonly.yaml",
    no_args_is_help=True,
)

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


@app.command()
def status(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="onceonly.yaml with a 'sources' section: each source it configures, with its dead letters "
            "(default: every source seen on source.heartbeats)"
        ),
    ] = None,
    source: Annotated[str | None, typer.Option("--source", "-s", help="only this source")] = None,
    dead_after: Annotated[
        float, typer.Option("--dead-after", min=1.0, help="dead after this many heartbeat intervals without one")
    ] = 3.0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Per source: its last heartbeat, how old it is, and alive / quiet / dead; with CONFIG, its dead letters.

    Sources beat every heartbeat_interval, busy or quiet. quiet: the source runs and has nothing to publish (no
    changes at the department). dead: no heartbeat for --dead-after intervals (or none at all): changes recorded
    meanwhile wait. Exits 1 when a source is dead, so a monitor can run it.

    Example:  onceonly source status onceonly.yaml
    Example:  onceonly source status --source gateway --dead-after 5
    """
    import json

    from connectors.sources import load_sources
    from onceonly.cli.common import console_err
    from onceonly.cli.replay_output import age, when
    from services.operator.source_status import dead, source_statuses

    settings = cli_settings(state_dir)
    configs = load_sources(config).select(source) if config is not None else None
    rows = source_statuses(settings, configs, only=source, dead_after=dead_after)
    if as_json:
        console.print_json(json.dumps([r.to_json() for r in rows], ensure_ascii=False))
    else:
        style = {"alive": "green", "quiet": "cyan", "dead": "bold red"}
        table = Table("source", "kind", "department", "state", "last heartbeat", "age", "published", box=None)
        if config is not None:
            table.add_column("dead letters", justify="right")
            table.add_column("last reasons")
        for r in rows:
            cells = [r.name, r.kind, r.department, f"[{style[r.state]}]{r.state}[/]"]
            cells += [
                when(r.beat.ts_ms if r.beat else None),
                age(r.age_s),
                str(r.beat.published_total if r.beat else "-"),
            ]
            if config is not None:
                cells += [
                    "-" if r.dead_letters is None else str(r.dead_letters),
                    r.problem or "\n".join(r.last_reasons),
                ]
            table.add_row(*cells)
        console.print(table)
    for r in dead(rows):
        since = "never sent a heartbeat" if r.beat is None else f"no heartbeat for {age(r.age_s)}"
        console_err.print(f"{r.name} is dead: {since} (expected every {r.interval_s:g}s)", highlight=False)
    if dead(rows):
        raise typer.Exit(1)
