"""``onceonly holder bootstrap|operations``: bring a new holder up to date, and see what operators did to a holder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from onceonly.cli.common import StateDir, cli_settings, console
from onceonly.cli.replay_output import agreements_from, progress_bar, when
from onceonly.settings import DEFAULT_STATE_DIR

app = typer.Typer(
    help="A holder's own operations: bootstrap a new holder; list the replays and bootstraps done to it.\n\n"
    "Example:  onceonly holder bootstrap civil_affairs --reason 'joined under mca-2024-004'",
    no_args_is_help=True,
)

Holder = Annotated[str, typer.Argument(help="department code of the holder")]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="the agreements the distributor runs with (default ./onceonly.yaml)"),
]


@app.command()
def bootstrap(
    holder: Holder,
    reason: Annotated[
        str | None, typer.Option(help="why (e.g. the new agreement); kept in the replay ledger with your name")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would be sent; send nothing")] = False,
    rate: Annotated[float | None, typer.Option(min=0.1, help="at most this many records per second")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan or result as JSON")] = False,
    config: ConfigOption = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Send a new holder the current granted state of every entity it is entitled to; live changes continue.

    First run the distributor with the holder's agreement (so live changes reach its inbox), start its
    subscriber, then bootstrap. The subscriber's version watermark makes the overlap harmless: nothing is
    missed, nothing applied twice.

    Example:  onceonly holder bootstrap civil_affairs --reason "joined under mca-2024-004" -c onceonly.yaml
    """
    from services.operator.bootstrap import plan_bootstrap, run_bootstrap

    settings = cli_settings(state_dir)
    agreements = agreements_from(config)
    if dry_run:
        with console.status(f"reading the latest state for {holder} ..."):
            plan, _, _ = plan_bootstrap(settings, agreements, holder)
        if as_json:
            console.print_json(json.dumps(plan.to_json(), ensure_ascii=False))
            return
        console.print(f"[bold]bootstrap plan for {holder}[/] (dry run: nothing sent)")
        console.print(plan.describe())
        if plan.not_delivering:
            console.print(
                f"[yellow]the distributor does not deliver to {holder} yet[/] ({', '.join(plan.not_delivering)} "
                "not registered): start it with the holder's agreement before the bootstrap"
            )
        return
    with (
        console.status(f"reading the latest state for {holder} ...") as reading,
        progress_bar(f"bootstrap {holder}") as bar,
    ):

        def started(total: int) -> None:
            reading.stop()
            bar.expect(total)

        result = run_bootstrap(
            settings, agreements, holder, reason=reason, rate=rate, progress=bar.advance, started=started
        )
    if as_json:
        console.print_json(json.dumps(result.to_json(), ensure_ascii=False))
        return
    t = result.tally
    console.print(
        f"bootstrapped {holder}: {t.delivered} records sent ({t.withheld} withheld) in {t.elapsed:.1f}s, "
        f"operation {result.operation_id}; live changes continue through the distributor"
    )


@app.command()
def operations(
    holder: Annotated[str | None, typer.Argument(help="only this holder")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="also check the ledger's hash chain")] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """List the replays and bootstraps done to holders (who, when, why, how many), from the replay ledger.

    Example:  onceonly holder operations tax --verify
    """
    from services.distributor.ledger import verify as verify_chain
    from services.operator.replay_ledger import ReplayLedger

    ledger = ReplayLedger(cli_settings(state_dir))
    entries = list(ledger.entries())
    table = Table("operation", "action", "holder", "operator", "started", "reason", "selection", "outcome", box=None)
    rows: dict[str, list[str]] = {}
    for _, e in entries:
        if holder is not None and e["holder"] != holder:
            continue
        op = str(e["operation_id"])
        if e["kind"] == "started":
            rows[op] = [
                op,
                e["action"],
                e["holder"],
                e["operator"],
                when(e["at"]),
                e["reason"] or "",
                e["detail"] or "",
                "",
            ]
        elif e["kind"] == "finished" and op in rows:
            rows[op][-1] = e["detail"] or ""
    for row in rows.values():
        table.add_row(*row)
    console.print(table)
    if verify:
        result = verify_chain(entries)
        console.print(f"replay ledger ok: {result.entries} entries, head seq {result.seq} hash {result.head}")
