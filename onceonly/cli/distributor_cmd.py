"""``onceonly distributor run|check``: apply the sharing agreements to every change and deliver to the holders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from onceonly.cli.common import StateDir, cli_settings, console, start_service
from onceonly.errors import ConfigError
from onceonly.settings import DEFAULT_STATE_DIR

app = typer.Typer(
    help="Deliver each holder what its sharing agreement grants, and audit it.\n\n"
    "Example:  onceonly distributor check onceonly.yaml",
    no_args_is_help=True,
)

ConfigFile = Annotated[
    Path | None,
    typer.Argument(help="a file with an 'agreements' section (default: ./onceonly.yaml)", show_default=False),
]


def config_path(config: Path | None) -> Path:
    path = config or Path("onceonly.yaml")
    if not path.is_file():
        raise ConfigError(f"{path}: file not found", hint="pass one: onceonly distributor run schemas/agreements.yaml")
    return path


@app.command()
def run(
    config: ConfigFile = None,
    batch_size: Annotated[int, typer.Option(min=1, max=50_000, help="changes per batch and commit")] = 500,
    metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus metrics on this port")] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Run the distributor until SIGTERM or Ctrl-C (it stops within seconds; a cut batch is redistributed).

    Run one per deployment: the delivery ledger is one hash chain with one writer.

    Example:  onceonly distributor run schemas/agreements.yaml
    """
    from services.distributor import load_agreements, run_distributor

    agreements = load_agreements(config_path(config))
    settings = cli_settings(state_dir)
    start_service(settings, metrics_port)
    run_distributor(agreements, settings, batch_size=batch_size)


@app.command()
def check(config: ConfigFile = None) -> None:
    """Check the agreements (holders, entity types, granted fields, overlaps) and list what each holder gets.

    Example:  onceonly distributor check schemas/agreements.yaml
    """
    from services.distributor import load_agreements

    agreements = load_agreements(config_path(config))
    table = Table("agreement", "holder", "grants", "interest", "condition", "in force")
    for a in agreements:
        grants = "\n".join(f"{e}: {', '.join(a.fields(e))}" for e in a.grants)
        until = f"{a.valid_from} to {a.valid_to or 'open end'}"
        table.add_row(a.id, a.holder, grants, a.interest, a.condition.describe() if a.condition else "", until)
    console.print(table)
    console.print(f"{len(agreements)} agreements ok")
