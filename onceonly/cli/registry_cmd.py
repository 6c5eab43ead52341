"""``onceonly registry serve``: the embedded Confluent-compatible schema registry."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="The embedded schema registry (Confluent REST API).", no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8081,
) -> None:
    """Serve the schema registry; `stack up` starts it for you.

    Example:  onceonly registry serve --port 8081
    """
    from services.registry import serve as run

    run(host, port)
