"""``onceonly schemas check|register``: the evolution gate over the schemas the catalog declares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from onceonly.cli.common import StateDir, cli_settings, console
from onceonly.settings import DEFAULT_STATE_DIR

app = typer.Typer(
    help="Check schema evolution against the declared compatibility modes, and register.\n\n"
    "Example:  onceonly schemas check --against http://127.0.0.1:8081",
    no_args_is_help=True,
)

SchemasDir = Annotated[
    Path | None,
    typer.Option("--schemas-dir", help="the schemas folder (topics.yaml, avro/); default: the project's schemas/"),
]
STATUS_STYLE = {
    "new": "[green]new[/]",
    "unchanged": "unchanged",
    "compatible": "[green]compatible[/]",
    "incompatible": "[red]INCOMPATIBLE[/]",
    "invalid": "[red]INVALID[/]",
}


@app.command()
def check(
    against: Annotated[
        str | None,
        typer.Option(help="a registry URL, or git:REF to compare with the files at a git ref (default: the registry)"),
    ] = None,
    schemas_dir: SchemasDir = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Check every declared schema against its history under the subject's declared compatibility mode.

    Each incompatibility is printed in words (field, types, rule); the command exits 1 if there is any.

    Example:  onceonly schemas check --against git:origin/main
    """
    from onceonly.catalog import schema_dir
    from onceonly.standard.gate import EvolutionRefused, check_against_git, check_against_registry
    from onceonly.standard.schemas import declared_subjects

    settings = cli_settings(state_dir)
    declared = declared_subjects(settings, schemas_dir)
    target = against or settings.registry_url
    if target.startswith("git:"):
        report = check_against_git(
            declared, target[4:], schemas_dir or schema_dir(), lambda root: declared_subjects(settings, root)
        )
    else:
        report = check_against_registry(declared, target)
    table = Table(title=f"against {report.against}")
    for column in ("subject", "mode", "verdict", "compared with"):
        table.add_column(column, overflow="fold")
    for r in report.results:
        table.add_row(r.subject, r.compatibility, STATUS_STYLE[r.status], r.detail)
    console.print(table)
    for r in report.failures:
        console.print(f"[red]{r.subject}[/] ({r.source}):", highlight=False)
        for p in r.problems:
            console.print(f"  - {p}", highlight=False, soft_wrap=True)
    if report.failures:
        raise EvolutionRefused(
            f"{len(report.failures)} of {len(report.results)} subject(s) break their declared compatibility "
            f"against {report.against}",
            hint="add defaults to new fields, or declare a new subject",
        )
    console.print(f"all {len(report.results)} subject(s) pass against {report.against}")


@app.command()
def register(
    registry: Annotated[str | None, typer.Option(help="registry URL (default: ONCEONLY_REGISTRY_URL)")] = None,
    schemas_dir: SchemasDir = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Register every declared schema and set each subject's declared compatibility mode.

    Idempotent: a schema already registered keeps its id and version. Exits 1 if the registry refuses any.

    Example:  onceonly schemas register --registry http://127.0.0.1:8081
    """
    from onceonly.standard.gate import EvolutionRefused, register_declared
    from onceonly.standard.schemas import declared_subjects

    settings = cli_settings(state_dir)
    url = registry or settings.registry_url
    done = register_declared(declared_subjects(settings, schemas_dir), url)
    table = Table(title=f"registry {url}")
    for column in ("subject", "mode", "id", "version", "action"):
        table.add_column(column, overflow="fold")
    action_style = {"registered": "[green]registered[/]", "unchanged": "unchanged", "refused": "[red]REFUSED[/]"}
    for r in done:
        table.add_row(r.subject, r.compatibility, str(r.schema_id or ""), str(r.version or ""), action_style[r.action])
    console.print(table)
    refused = [r for r in done if r.action == "refused"]
    for r in refused:
        console.print(f"[red]{r.subject}[/]: {r.message}", highlight=False, soft_wrap=True)
    if refused:
        raise EvolutionRefused(f"the registry refused {len(refused)} of {len(done)} subject(s)")
    console.print(f"{len(done)} subject(s) registered or unchanged")
