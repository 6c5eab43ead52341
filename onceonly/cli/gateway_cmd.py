"""``onceonly gateway serve|new-key``: the HTTP door for departments that cannot run a Kafka client."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onceonly.cli.common import StateDir, cli_settings, console, start_service
from onceonly.settings import DEFAULT_STATE_DIR

app = typer.Typer(
    help="Serve POST /v1/changes for departments, with an API key each.\n\nExample:  onceonly gateway new-key health",
    no_args_is_help=True,
)


@app.command()
def serve(
    config: Annotated[
        Path | None, typer.Argument(help="onceonly.yaml with a 'gateway' section (or set ONCEONLY_GATEWAY_API_KEYS)")
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8090,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Serve the gateway until SIGTERM or Ctrl-C; OpenAPI at /docs, health at /healthz, metrics at /metrics.

    Example:  onceonly gateway serve onceonly.yaml --port 8090
    """
    from services.gateway import load_gateway_config
    from services.gateway import serve as run

    settings = cli_settings(state_dir)
    gateway = load_gateway_config(config)
    start_service(settings)
    run(gateway, host, port)


@app.command("new-key")
def new_key(department: Annotated[str, typer.Argument(help="the department code the key is for")]) -> None:
    """Make an API key for a department: hand the key to the department, store only the hash in the config.

    Example:  onceonly gateway new-key health
    """
    from onceonly.catalog import load_departments
    from onceonly.signing import generate_api_key, hash_api_key

    load_departments().get(department)  # an unknown code is a clear error
    key = generate_api_key()
    console.print(f"key (give it to {department}, it is shown once): {key}", highlight=False, soft_wrap=True)
    console.print(f'config:  gateway.api_keys.{department}: "{hash_api_key(key)}"', highlight=False, soft_wrap=True)
