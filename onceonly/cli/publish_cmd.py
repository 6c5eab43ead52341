"""``onceonly publish TOPIC --from-json FILE.jsonl``: changes from a script or an export, one JSON object a line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from onceonly.cli.common import StateDir, cli_settings, console
from onceonly.errors import ConfigError
from onceonly.settings import DEFAULT_STATE_DIR

_SHOWN = 20


@dataclass
class Summary:
    sent: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


def entity_type_of(topic: str) -> str:
    """The entity type a change topic carries; accepts ``change.person`` or ``person``."""
    from onceonly.catalog import load_catalog

    catalog = load_catalog()
    if topic in catalog.entity_types:
        return topic
    for spec in catalog.topics:
        if spec.name == topic and spec.entity_type and not spec.per_entity_type:
            return spec.entity_type
    known = ", ".join(catalog.change_topic(e) for e in catalog.entity_types)
    raise ConfigError(f"{topic} is not a change topic", hint=f"change topics: {known}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    stream = sys.stdin if str(path) == "-" else path.open(encoding="utf-8")
    try:
        for number, line in enumerate(stream, start=1):
            if line.strip():
                yield number, line
    finally:
        if stream is not sys.stdin:
            stream.close()


def _parse(line: str, entity_type: str) -> dict[str, Any]:
    from onceonly.standard import RecordInvalid

    try:
        change = json.loads(line)
    except json.JSONDecodeError as e:
        raise RecordInvalid("", f"not JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(change, dict):
        raise RecordInvalid("", f"expected a JSON object, got {type(change).__name__}")
    if change.setdefault("entity_type", entity_type) != entity_type:
        raise RecordInvalid("entity_type", f"{change['entity_type']} does not belong on the {entity_type} topic")
    return change


def publish(
    topic: Annotated[str, typer.Argument(help="change topic (change.person) or entity type (person)")],
    from_json: Annotated[
        Path, typer.Option("--from-json", help="JSON Lines file, one change per line ('-' reads stdin)")
    ],
    batch_size: Annotated[int, typer.Option(min=1, max=50_000, help="changes sent before waiting for acks")] = 500,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate every line, send nothing")] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Validate and publish changes, one JSON object per line; exits 1 if any line was rejected or not sent.

    Each line is a change as the SDK takes it (entity_key, authority_version, op, event_type, after, ...);
    entity_type defaults to the topic's and authority to its owner; dates may be "YYYY-MM-DD".

    Example:  onceonly publish change.person --from-json moves.jsonl
    """
    from onceonly.publisher import Prepared, Publisher, PublishFailed
    from onceonly.standard import RecordInvalid

    if str(from_json) != "-" and not from_json.is_file():
        raise ConfigError(f"{from_json}: file not found")
    entity_type = entity_type_of(topic)
    total = sum(1 for _ in _lines(from_json)) if str(from_json) != "-" else None
    summary = Summary()
    with Publisher(cli_settings(state_dir), connector="sdk") as publisher:

        def flush(batch: list[tuple[int, Prepared]]) -> None:
            for (number, _), outcome in zip(batch, publisher.send([p for _, p in batch]), strict=True):
                if isinstance(outcome, PublishFailed):
                    summary.failed.append((number, str(outcome)))
                else:
                    summary.sent += 1
            batch.clear()

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("validating" if dry_run else "publishing", total=total)
            batch: list[tuple[int, Prepared]] = []
            for number, line in _lines(from_json):
                try:
                    batch.append((number, publisher.prepare(_parse(line, entity_type))))
                except RecordInvalid as e:
                    summary.rejected.append((number, str(e)))
                if dry_run:
                    summary.sent += len(batch)
                    batch.clear()
                elif len(batch) >= batch_size:
                    flush(batch)
                progress.advance(task)
            if batch:
                flush(batch)
    _report(summary, publisher.preparer.target(entity_type).topic, dry_run)
    if summary.rejected or summary.failed:
        raise typer.Exit(1)


def _report(summary: Summary, topic: str, dry_run: bool) -> None:
    verb = "valid" if dry_run else f"sent to {topic}"
    console.print(
        f"{summary.sent} {verb}, [red]{len(summary.rejected)} rejected[/], "
        f"[red]{len(summary.failed)} not acknowledged[/]",
        highlight=False,
    )
    for title, rows in (("rejected", summary.rejected), ("not acknowledged", summary.failed)):
        if not rows:
            continue
        table = Table("line", "reason", title=title, title_justify="left")
        for number, reason in rows[:_SHOWN]:
            table.add_row(str(number), reason)
        console.print(table)
        if len(rows) > _SHOWN:
            console.print(f"... and {len(rows) - _SHOWN} more {title}")
