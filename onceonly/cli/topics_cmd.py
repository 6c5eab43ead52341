"""``onceonly topics apply``: the catalog onto the cluster."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from onceonly.cli.common import StateDir, cli_settings, console
from onceonly.settings import DEFAULT_STATE_DIR
from onceonly.topics import apply_topics

app = typer.Typer(help="Create and check the topics of the catalog (schemas/topics.yaml).", no_args_is_help=True)


@app.command()
def apply(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be created, change nothing")] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Create every catalog topic that does not exist yet.

    Topics that exist with a different partition count are reported and make the command exit 1;
    they are never changed silently.

    Example:  onceonly topics apply --dry-run
    """
    report = apply_topics(cli_settings(state_dir), dry_run=dry_run)
    table = Table("topic", "partitions", "action")
    verb = "would create" if dry_run else "created"
    for a in report.actions:
        action = {"create": f"[green]{verb}[/]", "exists": "exists", "mismatch": f"[red]MISMATCH: {a.detail}[/]"}
        table.add_row(a.name, str(a.partitions), action[a.action])
    console.print(table)
    created = sum(a.action == "create" for a in report.actions)
    console.print(
        f"{verb} {created}, unchanged {len(report.actions) - created - len(report.mismatches)}, "
        f"mismatched {len(report.mismatches)}"
    )
    if report.mismatches:
        raise typer.Exit(1)
