"""``onceonly stack up|down|status``: the embedded stack for a laptop or CI."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from onceonly.cli.common import StateDir, console
from onceonly.settings import DEFAULT_STATE_DIR
from onceonly.stack import EmbeddedStack, StackOptions

app = typer.Typer(
    help="Start, stop and inspect the embedded stack (broker, registry, Redis).\n\n"
    "Example:  onceonly stack up && onceonly stack status",
    no_args_is_help=True,
)


@app.command()
def up(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    broker_port: Annotated[int, typer.Option(help="Kafka listener port")] = 9092,
    registry_port: Annotated[int, typer.Option(help="schema registry HTTP port")] = 8081,
    redis_port: Annotated[int | None, typer.Option(help="Redis port (default: a free one)")] = None,
    storage: Annotated[str, typer.Option(help="broker storage: memory, or s3 (a local moto server)")] = "memory",
) -> None:
    """Start the embedded stack in the background and print its connection settings.

    Running it again while the stack runs changes nothing.

    Example:  onceonly stack up --storage s3
    """
    stack = EmbeddedStack(state_dir)
    env, started = stack.up(
        StackOptions(broker_port=broker_port, registry_port=registry_port, redis_port=redis_port, storage=storage),
        say=lambda line: console.print(f"  started {line}"),
    )
    console.print("stack is up" if started else "stack already running")
    for k, v in env.items():
        console.print(f"{k}={v}", highlight=False)
    console.print(f"(saved in {stack.env_file}; every onceonly command reads it)", style="dim")


@app.command()
def down(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Stop what `stack up` started (by pid) and wait for it; nothing else is touched.

    Example:  onceonly stack down
    """
    stopped = EmbeddedStack(state_dir).down()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Show what runs, where, since when, and whether it answers.

    Exits 1 when a part is down or unhealthy.

    Example:  onceonly stack status
    """
    rows = EmbeddedStack(state_dir).status()
    if not rows:
        console.print("no stack running (start one with: onceonly stack up)")
        raise typer.Exit(1)
    table = Table("part", "state", "address", "pid", "since", "note")
    for r in rows:
        state = "[green]healthy[/]" if r.healthy else ("[yellow]unhealthy[/]" if r.running else "[red]down[/]")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.since)) if r.since else ""
        table.add_row(r.name, state, r.url, str(r.pid or ""), since, r.note)
    console.print(table)
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)
