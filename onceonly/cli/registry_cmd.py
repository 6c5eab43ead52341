"""``onceonly registry serve``: the embedded Confluent-compatible schema registry."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    help="The embedded schema registry (Confluent REST API).\n\n"
    "Example:  onceonly registry serve --port 8081 --store kafka",
    no_args_is_help=True,
)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8081,
    store: Annotated[
        str,
        typer.Option(
            help="where schemas live: 'kafka' (topic <prefix>_schemas), 'memory', or 'auto' "
            "(kafka when ONCEONLY_BOOTSTRAP_SERVERS is set)"
        ),
    ] = "auto",
) -> None:
    """Serve the schema registry; `stack up` starts it for you.

    Its state lives in the Kafka topic `<prefix>_schemas`, so a restarted registry serves the same ids.

    Example:  ONCEONLY_BOOTSTRAP_SERVERS=127.0.0.1:9092 onceonly registry serve --port 8081
    """
    from services.registry import serve as run

    run(host, port, store)
