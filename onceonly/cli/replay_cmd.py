"""``onceonly replay``: redeliver a window of changes to one holder, projected by its agreement, audited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from onceonly.cli.common import StateDir, cli_settings, console
from onceonly.cli.replay_output import agreements_from, progress_bar
from onceonly.settings import DEFAULT_STATE_DIR

if TYPE_CHECKING:
    from services.operator.replay import ReplayPlan

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="the agreements the distributor runs with (default ./onceonly.yaml)"),
]
Reason = Annotated[str | None, typer.Option(help="why (ticket, incident); kept in the replay ledger with your name")]
Rate = Annotated[float | None, typer.Option(min=0.1, help="at most this many records per second")]


def replay(
    holder: Annotated[str, typer.Option("--holder", help="department code of the one holder to redeliver to")],
    start: Annotated[
        str | None, typer.Option("--from", help="start time, ISO 8601 (local time unless it has an offset)")
    ] = None,
    by_duration: Annotated[
        str | None, typer.Option("--by-duration", help="start this long ago: 2h, 90m, 1d12h")
    ] = None,
    from_offset: Annotated[
        int | None, typer.Option("--from-offset", help="start at this offset of every partition")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="end time (exclusive); default: up to now")] = None,
    keys: Annotated[
        list[str] | None, typer.Option("--key", "-k", help="only this entity key (repeat for more)")
    ] = None,
    entities: Annotated[
        list[str] | None, typer.Option("--entity", "-e", help="only this entity type (repeat for more)")
    ] = None,
    reason: Reason = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan; send nothing")] = False,
    rate: Rate = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan or result as JSON")] = False,
    config: ConfigOption = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Redeliver the changes of a window to ONE holder, through its agreement, into its inbox only.

    The holder receives only the fields its agreement grants today; other holders, consumer groups and the
    distributor are not touched. Applying is idempotent, so what the store already has is skipped, never damaged.
    Every record sent, and your name and reason, go into the replay ledger (audit.replays).

    Example:  onceonly replay --holder tax --by-duration 2h --dry-run
    Example:  onceonly replay --holder tax --from 2025-06-01T08:00 --to 2025-06-01T12:00 --reason "INC-4411 restore"
    Example:  onceonly replay --holder housing_fund --key 11010519491231002X -c schemas/agreements.yaml
    """
    from services.operator.replay import plan_replay, run_replay
    from services.operator.time_window import Window

    settings = cli_settings(state_dir)
    agreements = agreements_from(config)
    window = Window.of(start=start, by_duration=by_duration, from_offset=from_offset, end=to)
    with console.status(f"reading the changes {window.describe()} for {holder} ..."):
        plan = plan_replay(settings, agreements, holder, window, keys=keys or (), entity_types=entities or None)
    if dry_run:
        if as_json:
            console.print_json(json.dumps(plan.to_json(), ensure_ascii=False))
        else:
            print_plan(plan)
        return
    with progress_bar(f"replay to {holder}") as bar:
        result = run_replay(settings, plan, reason=reason, rate=rate, progress=bar.advance, started=bar.expect)
    if as_json:
        console.print_json(json.dumps(result.to_json(), ensure_ascii=False))
        return
    t = result.tally
    console.print(
        f"replayed {t.delivered} changes to {holder} ({t.withheld} withheld) in {t.elapsed:.1f}s, "
        f"operation {result.operation_id}; what its store already has is skipped by version"
    )


def print_plan(plan: ReplayPlan) -> None:
    table = Table("topic", "partition", "offsets read", "records", "to deliver", "first..last delivered", box=None)
    for s in plan.spans:
        first_last = f"{s.first}..{s.last}" if s.first is not None else "-"
        end = s.end if s.end is not None else s.start
        read = f"{s.start}..{end - 1}" if end > s.start else f"none from {s.start}"
        table.add_row(s.topic, str(s.partition), read, str(s.read), str(s.deliveries), first_last)
    console.print(f"[bold]replay plan for {plan.holder}[/] (dry run: nothing sent)")
    console.print(f"window: {plan.window.describe()}; entity types: {', '.join(plan.entity_types)}")
    console.print(table)
    withheld = ", ".join(f"{n} {c}" for c, n in plan.withheld.most_common()) or "none"
    console.print(
        f"{plan.deliveries} changes to deliver, {plan.changes} read; withheld: {withheld}; "
        f"out of scope (interest, condition): {plan.out_of_scope}; undecodable: {plan.undecodable}"
    )
    keys = sorted(plan.delivered_keys)
    shown = ", ".join(keys[:20]) + (f" and {len(keys) - 20} more" if len(keys) > 20 else "")
    console.print(f"{len(keys)} keys: {shown}")
    if plan.keys_outside_window:
        console.print(f"no change in the window for: {', '.join(plan.keys_outside_window)}")
