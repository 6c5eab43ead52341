"""``onceonly operator serve``: the operator service (dead letters, scorecard, live page, metrics) over HTTP."""

from __future__ import annotations

from pathlib import Path
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
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="onceonly.yaml: its agreements for replay and bootstrap (as `onceonly replay -c` reads them), its "
            "subscribers (if any) for lag; default: the file named by ONCEONLY_AGREEMENTS, else ./onceonly.yaml",
        ),
    ] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Serve the live page (GET /), /api/dlq, /api/scorecard, /api/live, the replay/status/trace/lag API, /metrics.

    Replay and bootstrap need the agreements the distributor runs with: give its config with -c (read at start,
    so a mistake in it stops the start); without -c, ONCEONLY_AGREEMENTS names the file, read per request.

    Example:  onceonly operator serve --host 127.0.0.1 --port 8095 -c onceonly.yaml
    """
    import uvicorn

    from services.operator.app import create_app

    if not 0 < port < 65536:
        raise PortInUse(f"--port {port} is not a TCP port (1 to 65535)")
    if port_open(host if host not in ("0.0.0.0", "::") else "127.0.0.1", port):
        raise PortInUse(f"{host}:{port} is already in use", hint="choose another --port")
    settings = cli_settings(state_dir)
    app = create_app(settings, config=config)
    start_service(settings)  # its own /metrics serves Prometheus, so no second metrics port
    console.print(f"operator service on http://{host}:{port}/")
    # log_config=None: uvicorn's own lines go through the service's (JSON) logging too
    uvicorn.run(app, host=host, port=port, log_level="warning", log_config=None)
