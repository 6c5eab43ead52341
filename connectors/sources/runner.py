"""The loop every source runs: look, publish, report liveness, and on a transient fault wait and look again.

Transient faults (broker or registry away, database connection lost, export file missing) never skip anything:
the source marks nothing as done, so the same input is read again after a backoff. Anything else is a bug or a
configuration mistake and stops the source with its error.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from connectors.sources.config import SourceBase
from onceonly.errors import BrokerUnavailable
from onceonly.metrics import SOURCE_RETRIES
from onceonly.publisher import Heartbeat, Publisher, PublishFailed
from onceonly.standard import RegistryUnavailable

log = logging.getLogger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (
    PublishFailed,
    RegistryUnavailable,
    BrokerUnavailable,
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    OSError,
)


@dataclass
class Step:
    """What one look at the input did; ``more`` asks for the next look without waiting."""

    published: int = 0
    rejected: int = 0
    more: bool = False


class Source(Protocol):
    name: str
    kind: str

    def open(self) -> None: ...

    def step(self) -> Step: ...

    def wait(self, timeout: float, stop: threading.Event) -> None: ...

    def close(self) -> None: ...


@dataclass
class RunReport:
    published: int = 0
    rejected: int = 0
    retries: int = 0
    last_error: str | None = None


class Backoff:
    """Doubling waits from ``first`` up to ``ceiling``, reset by a success."""

    def __init__(self, first: float, ceiling: float) -> None:
        self.first = first
        self.ceiling = ceiling
        self.current = first

    def next(self) -> float:
        delay = self.current
        self.current = min(self.current * 2, self.ceiling)
        return delay

    def reset(self) -> None:
        self.current = self.first


class SourceRunner:
    """Runs one source until ``stop`` is set (or, with ``once``, until its input is drained)."""

    def __init__(self, source: Source, publisher: Publisher, config: SourceBase, stop: threading.Event) -> None:
        self.source = source
        self.config = config
        self.stop = stop
        self.heartbeat = Heartbeat(
            publisher,
            config.name,
            source.kind,
            config.department,
            config.heartbeat_interval,
            looks_every=config.poll_interval,
        )
        self.backoff = Backoff(min(0.5, config.retry_backoff_max), config.retry_backoff_max)
        self.report = RunReport()
        self._publisher = publisher

    def _retry(self, error: BaseException) -> None:
        SOURCE_RETRIES.labels(self.config.name).inc()
        self.report.retries += 1
        broker = self._publisher.last_error
        self.report.last_error = (
            f"{error} (broker: {broker})" if broker and isinstance(error, PublishFailed) else str(error)
        )
        delay = self.backoff.next()
        log.warning(
            "source %s: %s; nothing marked done, retrying in %.1fs", self.config.name, self.report.last_error, delay
        )
        self.stop.wait(delay)

    def run(self, *, once: bool = False, give_up_after: int | None = None) -> RunReport:
        """Loop; ``give_up_after`` consecutive transient failures re-raise the last one (for ``--once`` runs)."""
        opened = False
        failures = 0
        try:
            while not self.stop.is_set():
                try:
                    if not opened:
                        self.source.open()
                        opened = True
                    step = self.source.step()
                    self.heartbeat.alive(step.published, step.rejected)
                    self.heartbeat.beat_if_due()
                except TRANSIENT as e:
                    failures += 1
                    if give_up_after is not None and failures >= give_up_after:
                        raise
                    self._retry(e)
                    continue
                failures = 0
                self.backoff.reset()
                self.report.published += step.published
                self.report.rejected += step.rejected
                if step.more:
                    continue
                if once:
                    break
                self.source.wait(self.config.poll_interval, self.stop)
        finally:
            if opened:
                self.source.close()
        return self.report
