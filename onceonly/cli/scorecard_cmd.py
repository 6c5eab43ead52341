"""``onceonly scorecard``: did changes land at every holder, how fast, and what is stuck, over a period."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from onceonly.cli.common import StateDir, cli_settings, console, console_err
from onceonly.errors import ConfigError
from onceonly.settings import DEFAULT_STATE_DIR


def scorecard(
    since: Annotated[str, typer.Option("--since", help="the period, back from now: 7d, 12h, 30m, ...")] = "7d",
    fmt: Annotated[str, typer.Option("--format", help="table, json or html")] = "table",
    target: Annotated[
        str, typer.Option("--target", help="a change should be applied within this: 60s, 5m, ...")
    ] = "60s",
    holder: Annotated[str | None, typer.Option("--holder", help="only this department")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write json/html to this file instead of stdout")
    ] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Per holder: changes received, applied within the target, p50/p99 propagation time, dead letters open, lag now.

    Propagation is from recorded_at at the authority to the holder's first 'applied' receipt.

    Example:  onceonly scorecard --since 7d --target 60s --format html --out scorecard.html
    """
    from onceonly.catalog import load_departments
    from services.operator.scorecard import parse_duration_ms
    from services.operator.scorecard_render import as_json, html_page, rich_table
    from services.operator.view import OperatorView

    if fmt not in ("table", "json", "html"):
        raise ConfigError(f"--format {fmt!r} is not one of: table, json, html")
    since_ms = int(time.time() * 1000) - parse_duration_ms(since, "--since")
    target_ms = parse_duration_ms(target, "--target")
    if holder is not None:
        if holder == "distributor":
            raise ConfigError("the scorecard is per holder; 'distributor' is not one")
        load_departments().get(holder)
    with console_err.status("reading receipts, dead letters and offsets"):
        view = OperatorView(cli_settings(state_dir)).refresh()
        card = view.scorecard(since_ms=since_ms, target_ms=target_ms, holders=[holder] if holder else None)
    if fmt == "table":
        console.print(rich_table(card))
        for note in card.notes:
            console_err.print(f"note: {note}")
        return
    text = as_json(card) if fmt == "json" else html_page(card)
    if out is None:
        typer.echo(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot write {out}: {e.strerror}") from e
    console.print(f"scorecard written to {out}")
