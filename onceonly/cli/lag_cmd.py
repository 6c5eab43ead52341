"""``onceonly lag``: per holder, the changes delivered but not applied yet, and how long the oldest has waited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from onceonly.cli.common import StateDir, cli_settings, console
from onceonly.cli.replay_output import age
from onceonly.settings import DEFAULT_STATE_DIR


def lag(
    holder: Annotated[str | None, typer.Option("--holder", help="only this department")] = None,
    partitions: Annotated[bool, typer.Option("--partitions", help="one line per inbox partition")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="onceonly.yaml with a 'subscribers' section: each holder's group and topics as its subscriber "
            "runs them (default: group subscriber.<holder> on inbox.<holder>)",
        ),
    ] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Per holder: records in its inbox its subscriber has not processed yet, and the age of the oldest.

    Measured the same way on Apache Kafka and the embedded broker: the inbox's high watermark (from a fetch on
    the embedded broker, whose ListOffsets is wrong) minus the subscriber group's committed offset; the oldest
    waiting record is fetched to read its time. Without --holder, the distributor's backlog is shown too. A
    subscriber configured with its own group_id (or source_topic) is measured there when -c names its config.

    Example:  onceonly lag --holder tax
    Example:  onceonly lag -c onceonly.yaml
    """
    from services.operator.lag_report import measure
    from services.subscriber.config import load_subscribers

    subscribers = load_subscribers(config) if config is not None else None
    rows = measure(cli_settings(state_dir), holder, subscribers=subscribers)
    if as_json:
        console.print_json(json.dumps([r.to_json() for r in rows], ensure_ascii=False))
        return
    table = Table("holder", "waiting", "oldest waited", "group", box=None)
    for row in rows:
        style = "green" if row.waiting == 0 else "yellow"
        table.add_row(row.name, f"[{style}]{row.waiting}[/]", age(row.oldest_age_s), row.group)
        if partitions:
            for p in row.partitions:
                table.add_row(
                    f"  {p.topic}[{p.partition}]", str(p.waiting), "", f"end {p.end}, committed {p.committed}"
                )
    console.print(table)
