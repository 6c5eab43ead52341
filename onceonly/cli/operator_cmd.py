"""``onceonly operator serve``: the operator service (dead letters, scorecard, live page, metrics) over HTTP."""

from __future__ import annotations

from typing import Annotated

import typer

from onceonly.cli.common import StateDir, cli_settings, console, start_service
from onceonly.errors import OnceonlyError
from onceonly.settings import DEFAULT_STATE_DIR
from onceonly.stack.process import port_open

app = typer.Typer(
    help="The operator service: live propagation page, dead letters and scorecard over HTTP.\n\n"
    "Example:  onceonly operator serve --port 8095",
    no_args_is_help=True,
)


class PortInUse(OnceonlyError):
    """The requested address is taken, or the port is not a port."""


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="address to listen on (keep localhost unless a proxy authenticates)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8095,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Serve the live page (GET /), /api/dlq, /api/scorecard, /api/live, the replay/status/trace/lag API, /metrics.

    Example:  onceonly operator serve --host 127.0.0.1 --port 8095
    """
    import uvicorn

    from services.operator.app import create_app

    if not 0 < port < 65536:
        raise PortInUse(f"--port {port} is not a TCP port (1 to 65535)")
    if port_open(host if host not in ("0.0.0.0", "::") else "127.0.0.1", port):
        raise PortInUse(f"{host}:{port} is already in use", hint="choose another --port")
    settings = cli_settings(state_dir)
    start_service(settings)  # its own /metrics serves Prometheus, so no second metrics port
    app = create_app(settings)
    console.print(f"operator service on http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")
