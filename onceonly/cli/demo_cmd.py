"""``onceonly demo``: the whole story on the embedded stack, ending with one line a script can read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onceonly.cli.common import console


def demo(
    people: Annotated[
        int, typer.Option(help="residents to seed, at least 10 (one in ten with a 15-digit ID)")
    ] = 10_000,
    rate: Annotated[
        float | None, typer.Option(help="changes per second to publish (default: as fast as it goes)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="PostgreSQL server URL: each department gets a database there (default SQLite)")
    ] = None,
    keep: Annotated[bool, typer.Option(help="leave the embedded stack running afterwards")] = False,
    keep_stores: Annotated[
        bool,
        typer.Option(help="with --database-url: leave the department databases on the server (dropped otherwise)"),
    ] = False,
    state_dir: Annotated[Path, typer.Option(help="where the stack and the department stores live")] = Path(".onceonly"),
    timeout: Annotated[float, typer.Option(help="seconds to wait for every holder to converge")] = 600.0,
) -> None:
    """Run the whole story: six departments, a wave of changes recorded once, every holder updated and checked.

    public_security records through its outbox (outbox source), civil_affairs through daily CSV exports (snapshot
    diff), health through the HTTP gateway, hrss through the Python SDK; the adapters run as child processes.
    civil_affairs joins after the seed and is brought up by a bootstrap (as `onceonly holder bootstrap` does).

    Starts the embedded stack if none runs (and stops it after, unless --keep). With --database-url, the
    databases it created there are dropped at the end, whatever the outcome (unless --keep-stores). Exit code 0
    only if every holder's store equals the authorities' truth projected through its agreement.

    Example:  onceonly demo --people 2000
    """
    from rich.live import Live

    from onceonly.demo.run import DemoOptions, run_demo

    opts = DemoOptions(
        people=people,
        rate=rate,
        database_url=database_url,
        keep=keep,
        keep_stores=keep_stores,
        state_dir=state_dir,
        timeout=timeout,
    )
    opts.check()  # a bad option is one line, before anything starts
    _interrupt_on_sigterm()
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        result = run_demo(opts, lambda m: live.console.print(m), live.update)
    if not console.is_terminal:  # rich leaves the last line of a non-terminal Live unterminated
        console.line()
    for line in [*result.adapters.lines(), *result.joined]:
        console.print(line, highlight=False, soft_wrap=True)
    if result.dead_letters:
        console.print(f"poison record dead-lettered: {result.poison_reason or '(reason header missing)'}")
    for holder, problems in result.problems.items():
        console.print(f"[red]{holder} did not converge:[/] " + "; ".join(problems))
    console.print(result.line(), highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)


def _interrupt_on_sigterm() -> None:
    """SIGTERM and SIGHUP end the demo like Ctrl-C: its adapter processes and the stack it started are stopped."""
    import signal

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
