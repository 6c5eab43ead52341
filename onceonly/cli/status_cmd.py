"""``onceonly status EVENT_ID`` and ``onceonly trace --key KEY``: where a change landed, and one entity's history."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.table import Table

from onceonly.cli.common import StateDir, cli_settings, console
from onceonly.cli.replay_output import age, when
from onceonly.settings import DEFAULT_STATE_DIR

NoLedger = Annotated[bool, typer.Option("--no-ledger", help="receipts only: skip reading the ledgers (a scan of each)")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]
_STYLE = {"applied": "green", "pending": "yellow", "dead_lettered": "red", "withheld": "magenta"}


def status(
    event_id: Annotated[str, typer.Argument(help="the change's event id")],
    no_ledger: NoLedger = False,
    as_json: AsJson = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Which holders received, applied, skipped or dead-lettered one change, and when; "pending" when a holder
    got it but has not answered with a receipt yet.

    Example:  onceonly status 6f1c9a4e-2b7d-5c1e-9a0b-3d4e5f607182
    """
    from services.operator.propagation import status as change_status

    lines = change_status(cli_settings(state_dir), event_id, ledger=not no_ledger)
    if as_json:
        console.print_json(json.dumps([line.to_json() for line in lines], ensure_ascii=False))
        return
    now = time.time()
    table = Table("holder", "state", "since", "delivered", "reason", title=f"change {event_id}", box=None)
    for line in lines:
        style = _STYLE.get(line.state, "cyan")
        since = when(line.at) + (f" ({age(now - line.at / 1000)} ago)" if line.state == "pending" and line.at else "")
        delivered = "; ".join(f"{when(d.at)} by {d.via}" for d in line.deliveries) or "-"
        table.add_row(line.holder, f"[{style}]{line.state}[/]", since, delivered, line.reason or "")
    console.print(table)
    done = sum(1 for line in lines if line.state in ("applied", "skipped_duplicate", "skipped_stale"))
    console.print(f"{done} of {len(lines)} holders have it")


def trace(
    key: Annotated[str, typer.Option("--key", "-k", help="the entity key, e.g. an 18-digit ID number")],
    entity_type: Annotated[str, typer.Option("--type", "-t", help="entity type")] = "person",
    no_ledger: NoLedger = False,
    as_json: AsJson = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """The history of one entity across holders: every delivery and every receipt, oldest first.

    Example:  onceonly trace --key 11010519491231002X --type person
    """
    from onceonly.errors import ConfigError
    from onceonly.standard import entity_types
    from services.operator.propagation import trace as entity_trace

    if entity_type not in entity_types():
        raise ConfigError(f"unknown entity type {entity_type!r}", hint=f"known: {', '.join(entity_types())}")
    lines = entity_trace(cli_settings(state_dir), key, entity_type, ledger=not no_ledger)
    if as_json:
        console.print_json(json.dumps([line.to_json() for line in lines], ensure_ascii=False))
        return
    table = Table("when", "holder", "what", "version", "event", "reason", title=f"{entity_type} {key}", box=None)
    for line in lines:
        style = _STYLE.get(line.what.split(" ")[0], "cyan")
        version = str(line.authority_version) if line.authority_version is not None else "-"
        table.add_row(when(line.at), line.holder, f"[{style}]{line.what}[/]", version, line.event_id, line.reason or "")
    console.print(table)
