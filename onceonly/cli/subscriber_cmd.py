"""``onceonly subscriber run|check``: apply a department's changes to its own store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onceonly.cli.common import StateDir, cli_settings, console, start_service
from onceonly.errors import OnceonlyError
from onceonly.settings import DEFAULT_STATE_DIR

app = typer.Typer(
    help="Apply the changes a department receives to its own store.\n\n"
    "Example:  onceonly subscriber run onceonly.yaml --department housing_fund",
    no_args_is_help=True,
)

ConfigFile = Annotated[Path, typer.Argument(help="onceonly.yaml with a 'subscribers' section")]
Department = Annotated[
    str | None, typer.Option("--department", "-d", help="department code (default: every configured one)")
]


@app.command()
def run(
    config: ConfigFile,
    department: Department = None,
    metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus metrics on this port")] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Run the subscriber until SIGTERM or Ctrl-C (it stops within seconds, committing what it applied).

    Run the same command again (on any machine) to add a worker: workers of a department share its partitions.
    Each worker is a faust-streaming app (engine: faust, the default) or a confluent-kafka loop (engine: loop).

    Example:  onceonly subscriber run onceonly.yaml --department housing_fund
    """
    from services.subscriber import load_subscribers, run_subscribers

    settings = cli_settings(state_dir)
    selected = load_subscribers(config).select(department)
    start_service(settings, metrics_port)
    run_subscribers(selected, settings)


@app.command()
def check(config: ConfigFile, department: Department = None, state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Check the configuration and each department's mapping against its store, without consuming anything.

    An SQL store gets its watermark table if it has none (the subscriber would create it anyway), and so does an
    HTTP sink's watermark store (watermark_url, default <state dir>/subscribers/<topic prefix><dept>.sqlite).
    An HTTP sink's API is asked once (HEAD on its url up to {entity_type}): any HTTP answer is reachable, none
    within the sink's timeout is not. Exits non-zero at the first store that is not reachable.

    Example:  onceonly subscriber check onceonly.yaml
    """
    from connectors.sinks import HttpSink, TransientSinkError
    from connectors.sinks.config import describe
    from services.subscriber import load_subscribers
    from services.subscriber.applier import holder_sink

    settings = cli_settings(state_dir)
    for sub in load_subscribers(config).select(department):
        sink = holder_sink(sub, settings)
        try:
            sink.open()
            if isinstance(sink, HttpSink):
                sink.probe()
        except TransientSinkError as e:
            raise OnceonlyError(f"{sub.department}: the store is not reachable: {e}") from e
        finally:
            sink.close()
        console.print(f"{sub.department}: {', '.join(sub.topics)} -> {describe(sub.sink)} [green]ok[/]")
