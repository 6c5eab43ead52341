"""What every command shares: consoles, settings and the state-dir option."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from onceonly.errors import OnceonlyError
from onceonly.settings import DEFAULT_STATE_DIR, Settings, load_settings

console = Console()
console_err = Console(stderr=True)

StateDir = Annotated[
    Path,
    typer.Option("--state-dir", help="where the embedded stack keeps its state", envvar="ONCEONLY_STATE_DIR"),
]


def start_service(settings: Settings, metrics_port: int | None = None) -> None:
    """What every ``run``/``serve`` command does first: structured logs, and Prometheus metrics if asked."""
    from onceonly.logs import configure_service_logging

    configure_service_logging(settings.log_format, settings.log_level)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        try:
            start_http_server(metrics_port)
        except OSError as e:
            raise OnceonlyError(f"cannot serve metrics on port {metrics_port}: {e.strerror}") from e


def cli_settings(state_dir: Path | None = None) -> Settings:
    """Settings from the environment, falling back to the running stack's ``stack.env``."""
    if state_dir is not None:
        os.environ["ONCEONLY_STATE_DIR"] = str(state_dir)
    return load_settings(state_dir=state_dir or DEFAULT_STATE_DIR)
