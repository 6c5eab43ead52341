"""``onceonly dlq list|show|redrive|history``: why changes did not land, and sending them again after a fix."""

from __future__ import annotations

import getpass
import json
import os
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from onceonly.cli.common import StateDir, cli_settings, console, console_err
from onceonly.errors import OnceonlyError
from onceonly.settings import DEFAULT_STATE_DIR

app = typer.Typer(
    help="Dead letters: what could not be applied and why; re-drive them after a fix "
    "(recorded in the audit ledger).\n\n"
    "Example:  onceonly dlq list --holder housing_fund",
    no_args_is_help=True,
)


class DlqUsageError(OnceonlyError):
    """Options that do not go together."""


Holder = Annotated[
    str | None, typer.Option("--holder", help="a department code, or 'distributor' for the distributor's dead letters")
]
Format = Annotated[str, typer.Option("--format", help="table or json")]


def _check_format(fmt: str) -> None:
    if fmt not in ("table", "json"):
        raise DlqUsageError(f"--format {fmt!r} is not one of: table, json")


def _operator_default() -> str:
    return os.environ.get("ONCEONLY_OPERATOR") or getpass.getuser()


def _sources(holder: str | None) -> list[str]:
    from services.operator.dead_letters import all_sources, check_source

    return [check_source(holder)] if holder else all_sources()


@app.command("list")
def list_(
    holder: Holder = None,
    include_closed: Annotated[bool, typer.Option("--all", help="also dead letters already re-driven")] = False,
    fmt: Format = "table",
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """List open dead letters (re-driven ones are closed and left out) with where and why they failed.

    Example:  onceonly dlq list --holder housing_fund
    """
    from services.operator.dlq_view import letters

    _check_format(fmt)
    sources = _sources(holder)
    with console_err.status("reading dead-letter topics"):
        found = letters(cli_settings(state_dir), sources, include_closed=include_closed)
    if fmt == "json":
        typer.echo(json.dumps([s.as_json() for s in found], ensure_ascii=False, indent=2))
        return
    where = holder or "any holder or the distributor"
    if not found:
        console.print(f"no {'' if include_closed else 'open '}dead letters for {where}")
        return
    table = Table(title=f"dead letters: {where}")
    table.add_column("id", no_wrap=True)
    for name in ("holder", "key", "stage", "reason", "dead-lettered at", "status"):
        table.add_column(name, overflow="fold")
    for s in found:
        info = s.as_json()
        status = "open" if s.open else f"re-driven by {info['redriven']['operator']} (seq {info['redriven']['seq']})"
        if s.letter.redrive_of:
            status += f", came back from {s.letter.redrive_of}"
        table.add_row(
            str(s.letter.id),
            s.letter.holder or "-",
            escape(s.letter.entity_key),
            s.letter.stage,
            escape(f"{s.letter.error_class.rsplit('.', 1)[-1]}: {s.letter.reason}"[:160]),
            info["dead_lettered_at"] or "-",
            status,
        )
    console.print(table)


@app.command()
def show(
    letter_id: Annotated[str, typer.Option("--id", help="the dead letter, e.g. housing_fund:0:12 (see: dlq list)")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Show one dead letter: why it failed, its headers, its record decoded, and whether it was re-driven.

    Example:  onceonly dlq show --id housing_fund:0:12
    """
    from onceonly.standard import RegistryClient, Serde
    from services.operator.dead_letters import DeadLetterId
    from services.operator.dlq_view import letter_detail

    parsed = DeadLetterId.parse(letter_id)
    settings = cli_settings(state_dir)
    detail = letter_detail(settings, parsed, Serde(RegistryClient(settings.registry_url)))
    typer.echo(json.dumps(detail, ensure_ascii=False, default=str, indent=2))


@app.command()
def redrive(
    letter_ids: Annotated[
        list[str] | None, typer.Option("--id", help="a dead letter to re-drive (repeat for several)")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="every open dead letter (of --holder, else of everyone)")
    ] = False,
    holder: Holder = None,
    edit: Annotated[bool, typer.Option("--edit", help="open $EDITOR on the decoded record first (one --id)")] = False,
    assignments: Annotated[
        list[str] | None,
        typer.Option("--set", help="change a field first: path=value, e.g. after.district_code=110105"),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="why (ticket, fix made): kept in the audit ledger")] = "",
    operator: Annotated[
        str, typer.Option("--operator", help="who re-drives (default: $ONCEONLY_OPERATOR, else your login)")
    ] = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Send dead letters back to be applied after the cause was fixed; each one is recorded in the audit ledger.

    A holder's dead letter goes back to its inbox (applying is idempotent, so this is safe even if it landed since);
    the distributor's goes back to its change topic. With --edit or --set the record is changed, checked against its
    schema and the data standard, and then sent.

    Example:  onceonly dlq redrive --id housing_fund:0:12 --set after.district_code=110105 --reason "INC-88: bad code"
    """
    from services.operator.dead_letters import DeadLetter, DeadLetterId
    from services.operator.record_edit import edit_letter
    from services.operator.redrive import Redriver

    ids = letter_ids or []
    sets = assignments or []
    if every == bool(ids):
        raise DlqUsageError("give --id (one or more) or --all", hint="see: onceonly dlq list")
    if holder and ids:
        raise DlqUsageError("--holder goes with --all; an --id already names its holder")
    if (edit or sets) and len(ids) != 1:
        raise DlqUsageError("--edit and --set change one record: give exactly one --id")
    operator = operator or _operator_default()
    parsed = [DeadLetterId.parse(i) for i in ids]
    settings = cli_settings(state_dir)
    redriver = Redriver(settings)
    if every:
        sources = _sources(holder)
        with console_err.status("re-driving open dead letters"):
            outcome = redriver.all_open(sources, operator=operator, reason=reason)
        for letter, why in outcome.skipped:
            console_err.print(f"[yellow]skipped[/] {letter.id}: {escape(why)}", highlight=False)
        if not outcome.redriven:
            console.print(f"nothing to re-drive: no open dead letters for {holder or 'any holder or the distributor'}")
            return
        for r in outcome.redriven:
            console.print(f"re-driven {r.line()}", highlight=False)
        console.print(f"{len(outcome.redriven)} dead letters re-driven by {operator}")
        return

    def editor(letter: DeadLetter) -> tuple[bytes, list[str]]:
        edited = edit_letter(redriver.serde, letter, assignments=sets, interactive=edit)
        for line in edited.edits:
            console.print(f"  edit {escape(line)}", highlight=False)
        return edited.value, edited.edits

    for letter_id in parsed:
        done = redriver.one(letter_id, operator=operator, reason=reason, editor=editor if (edit or sets) else None)
        console.print(f"re-driven {done.line()}", highlight=False)


@app.command()
def history(
    holder: Holder = None,
    fmt: Format = "table",
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Show the operators' ledger (every re-drive and edit, who and why) after checking its hash chain.

    Example:  onceonly dlq history --holder housing_fund
    """
    from services.distributor.ledger import verify
    from services.operator.action_ledger import ActionLedger

    _check_format(fmt)
    if holder:
        _sources(holder)
    entries = ActionLedger(cli_settings(state_dir)).entries()
    verified = verify((f"offset {i}", e) for i, e in enumerate(entries))
    shown = [e for e in entries if not holder or holder in (e["holder"], e["dead_letter_id"].split(":")[0])]
    if fmt == "json":
        typer.echo(json.dumps(shown, ensure_ascii=False, indent=2))
        return
    table = Table("seq", "at", "operator", "action", "dead letter", "to", "reason", "edits")
    for e in shown:
        table.add_row(
            str(e["seq"]),
            datetime.fromtimestamp(e["at"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            escape(e["operator"]),
            e["action"],
            e["dead_letter_id"],
            f"{e['target_topic']}[{e['target_partition']}]@{e['target_offset']}",
            escape(e["reason"]),
            escape("; ".join(e["edits"])),
        )
    console.print(table)
    console.print(f"ledger ok: {verified.entries} entries, head seq {verified.seq} hash {verified.head}")
