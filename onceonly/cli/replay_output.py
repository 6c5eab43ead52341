"""What replay, bootstrap, status, trace and lag share on screen: the progress bar, times, ages, agreements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from onceonly.cli.common import console_err
from onceonly.errors import ConfigError

if TYPE_CHECKING:
    from services.distributor.agreements import Agreements


class RateColumn(ProgressColumn):
    """Records per second, as measured over the last updates."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- /s" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


class Bar:
    """A progress bar that appears once the work starts (``expect(total)``): a refused run prints none."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def expect(self, total: int) -> None:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
        )
        self._progress = Progress(*columns, console=console_err, transient=False)
        self._progress.start()
        self._task = self._progress.add_task(self.what, total=total)

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextmanager
def progress_bar(what: str) -> Iterator[Bar]:
    """Count, rate and time left on stderr, from ``bar.expect(total)`` on; ``bar.advance(n)`` as records land."""
    bar = Bar(what)
    try:
        yield bar
    finally:
        bar.close()


def agreements_from(config: Path | None) -> Agreements:
    """The agreements the distributor runs with (an ``agreements`` section; default ``./onceonly.yaml``)."""
    from services.distributor import load_agreements

    path = config or Path("onceonly.yaml")
    if not path.is_file():
        raise ConfigError(
            f"{path}: file not found (the agreements the distributor runs with)",
            hint="pass it: --config schemas/agreements.yaml",
        )
    return load_agreements(path)


def when(ms: int | None) -> str:
    """Epoch milliseconds as local wall-clock time."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
