"""``onceonly lag``: per holder, the changes delivered but not applied yet, and how long the oldest has waited."""

from __future__ import annotations

import json
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
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Per holder: records in its inbox its subscriber has not processed yet, and the age of the oldest.

    Measured the same way on Apache Kafka and the embedded broker: the inbox's high watermark (from a fetch on
    the embedded broker, whose ListOffsets is wrong) minus the subscriber group's committed offset; the oldest
    waiting record is fetched to read its time. Without --holder, the distributor's backlog is shown too.

    Example:  onceonly lag --holder tax
    """
    from services.operator.lag_report import measure

    rows = measure(cli_settings(state_dir), holder)
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
