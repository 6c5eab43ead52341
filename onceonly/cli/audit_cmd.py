"""``onceonly audit verify|export|show``: check the delivery ledger's hash chain, copy it, and read it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from onceonly.cli.common import StateDir, cli_settings, console
from onceonly.settings import DEFAULT_STATE_DIR

app = typer.Typer(
    help="The delivery ledger: who received what, and whether the record is whole.\n\nExample:  onceonly audit verify",
    no_args_is_help=True,
)


@app.command()
def verify(
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="verify this JSONL copy instead of the topic")
    ] = None,
    head: Annotated[str | None, typer.Option(help="the head hash noted earlier: also detects a cut-off end")] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Check every entry's hash and its link to the one before; name the first changed, removed or reordered entry.

    Example:  onceonly audit verify --file ledger-2025-06.jsonl
    """
    from services.distributor.audit import verify_ledger

    result = verify_ledger(cli_settings(state_dir), copy=file, head=head)
    console.print(f"ledger ok: {result.entries} entries, head seq {result.seq} hash {result.head}")


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write (one entry per line)")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Copy the ledger to a JSONL file an auditor can verify anywhere with ``audit verify --file``.

    Example:  onceonly audit export --out ledger.jsonl
    """
    from services.distributor.audit import ledger_entries
    from services.distributor.ledger import write_jsonl

    n = write_jsonl((e for _, e in ledger_entries(cli_settings(state_dir))), out)
    console.print(f"{n} entries written to {out}")


@app.command()
def show(
    entity_key: Annotated[str | None, typer.Option("--key", "-k", help="only this entity (e.g. a person)")] = None,
    holder: Annotated[str | None, typer.Option("--holder", help="only this department")] = None,
    event: Annotated[str | None, typer.Option("--event", help="only this event id")] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Print matching entries as JSON lines: which department received which fields, when, and under which agreement.

    Example:  onceonly audit show --key 11010519491231002X
    """
    from services.distributor.audit import ledger_entries, matching
    from services.distributor.ledger import plain

    entries = ledger_entries(cli_settings(state_dir))
    for entry in matching(entries, holder=holder, entity_key=entity_key, event_id=event):
        console.print_json(json.dumps(plain(entry), ensure_ascii=False))
