"""``onceonly interest register|end|list|serve``: a holder's interest in single entities (afnemersindicatie)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from onceonly.cli.common import StateDir, cli_settings, console, start_service
from onceonly.settings import DEFAULT_STATE_DIR

app = typer.Typer(
    help="Register or end a holder's interest in one entity; it gets a fill message, then the changes.\n\n"
    "Example:  onceonly interest list --holder housing_fund",
    no_args_is_help=True,
)

Holder = Annotated[str, typer.Argument(help="department code of the holder")]
EntityType = Annotated[str, typer.Argument(help="entity type, e.g. person")]
Key = Annotated[str, typer.Argument(help="entity key, e.g. the 18-digit ID number")]
Reason = Annotated[str | None, typer.Option(help="why (case or account number), kept with the registration")]


@app.command()
def register(
    holder: Holder, entity_type: EntityType, key: Key, reason: Reason = None, state_dir: StateDir = DEFAULT_STATE_DIR
) -> None:
    """Register interest: the distributor sends the current granted state, then every change.

    Example:  onceonly interest register housing_fund person 11010519491231002X --reason "account 88120"
    """
    from services.distributor import InterestClient

    with InterestClient(cli_settings(state_dir)) as client:
        client.register(holder, entity_type, key, reason=reason)
    console.print(f"{holder} registered interest in {entity_type} {key}")


@app.command()
def end(
    holder: Holder, entity_type: EntityType, key: Key, reason: Reason = None, state_dir: StateDir = DEFAULT_STATE_DIR
) -> None:
    """End interest: no more changes of this entity reach the holder.

    Example:  onceonly interest end housing_fund person 11010519491231002X
    """
    from services.distributor import InterestClient

    with InterestClient(cli_settings(state_dir)) as client:
        client.end(holder, entity_type, key, reason=reason)
    console.print(f"{holder} ended interest in {entity_type} {key}")


@app.command("list")
def list_(
    holder: Annotated[str | None, typer.Option(help="only this department")] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """List the registrations in force.

    Example:  onceonly interest list --holder housing_fund
    """
    from services.distributor import current_interest

    table = Table("holder", "entity type", "key")
    for h, entity_type, key in current_interest(cli_settings(state_dir)):
        if holder is None or h == holder:
            table.add_row(h, entity_type, key)
    console.print(table)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8090,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Serve the inbox-side HTTP API (POST/DELETE /interest/{holder}/{entity_type}/{key}).

    Example:  onceonly interest serve --port 8090
    """
    import uvicorn

    from services.distributor.api import create_app

    settings = cli_settings(state_dir)
    start_service(settings)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", log_config=None)
