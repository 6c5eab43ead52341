"""What every command shares: consoles, settings and the state-dir option."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from onceonly.settings import DEFAULT_STATE_DIR, Settings, load_settings

console = Console()
console_err = Console(stderr=True)

StateDir = Annotated[
    Path,
    typer.Option("--state-dir", help="where the embedded stack keeps its state", envvar="ONCEONLY_STATE_DIR"),
]


def cli_settings(state_dir: Path | None = None) -> Settings:
    """Settings from the environment, falling back to the running stack's ``stack.env``."""
    if state_dir is not None:
        os.environ["ONCEONLY_STATE_DIR"] = str(state_dir)
    return load_settings(state_dir=state_dir or DEFAULT_STATE_DIR)
