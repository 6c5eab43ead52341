"""The ``onceonly`` command line. Each command group lives in its own module and registers here."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from onceonly.cli import (
    audit_cmd,
    demo_cmd,
    distributor_cmd,
    dlq_cmd,
    gateway_cmd,
    holder_cmd,
    interest_cmd,
    keys_cmd,
    lag_cmd,
    operator_cmd,
    publish_cmd,
    registry_cmd,
    render_cmd,
    replay_cmd,
    schemas_cmd,
    scorecard_cmd,
    source_cmd,
    stack_cmd,
    status_cmd,
    subscriber_cmd,
    topics_cmd,
    tracker_cmd,
)
from onceonly.cli.common import console_err
from onceonly.errors import OnceonlyError

app = typer.Typer(
    name="onceonly",
    help="Record a change once; every department that holds the data gets it.\n\n"
    "Example:  onceonly stack up && onceonly demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(stack_cmd.app, name="stack")
app.add_typer(topics_cmd.app, name="topics")
app.add_typer(render_cmd.app, name="acls")
app.add_typer(registry_cmd.app, name="registry")
app.add_typer(schemas_cmd.app, name="schemas")
app.add_typer(subscriber_cmd.app, name="subscriber")
app.add_typer(distributor_cmd.app, name="distributor")
app.add_typer(tracker_cmd.app, name="tracker")
app.add_typer(gateway_cmd.app, name="gateway")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(interest_cmd.app, name="interest")
app.command("publish")(publish_cmd.publish)
app.add_typer(source_cmd.app, name="source")
app.command("demo")(demo_cmd.demo)
app.add_typer(dlq_cmd.app, name="dlq")
app.command("scorecard")(scorecard_cmd.scorecard)
app.add_typer(operator_cmd.app, name="operator")
app.command("replay")(replay_cmd.replay)
app.add_typer(holder_cmd.app, name="holder")
app.command("status")(status_cmd.status)
app.command("trace")(status_cmd.trace)
app.command("lag")(lag_cmd.lag)


def main() -> None:
    """Entry point: a user mistake is one line on stderr and a non-zero exit, never a traceback."""
    try:
        app()
    except OnceonlyError as e:
        # escaped: a message may hold brackets (onceonly[embedded], a list) that rich would take for markup
        console_err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        console_err.print("interrupted")
        sys.exit(130)
