"""Run the configured sources side by side (one thread and one producer each) until stopped."""

from __future__ import annotations

import logging
import threading

from connectors.sources.config import OutboxSourceConfig, SnapshotSourceConfig
from connectors.sources.outbox import OutboxSource
from connectors.sources.runner import RunReport, Source, SourceRunner
from connectors.sources.snapshot import SnapshotSource
from onceonly.publisher import Publisher
from onceonly.settings import Settings

log = logging.getLogger(__name__)
AnySourceConfig = OutboxSourceConfig | SnapshotSourceConfig


def build_source(config: AnySourceConfig, publisher: Publisher, settings: Settings) -> Source:
    if isinstance(config, OutboxSourceConfig):
        return OutboxSource(config, publisher)
    return SnapshotSource(config, publisher, settings.state_dir)


def connector_name(config: AnySourceConfig) -> str:
    """The ``source.connector`` value of the envelope for this kind of source."""
    return "outbox" if isinstance(config, OutboxSourceConfig) else "snapshot_diff"


def run_source(config: AnySourceConfig, settings: Settings, stop: threading.Event, *, once: bool = False) -> RunReport:
    """Run one source in this thread; ``once`` drains its input and returns (giving up after 5 failed tries)."""
    publisher = Publisher(settings, connector=connector_name(config), delivery_timeout=config.delivery_timeout)
    try:
        runner = SourceRunner(build_source(config, publisher, settings), publisher, config, stop)
        return runner.run(once=once, give_up_after=5 if once else None)
    finally:
        publisher.close(timeout=5.0)


def run_sources(
    configs: list[AnySourceConfig], settings: Settings, stop: threading.Event, *, once: bool = False
) -> dict[str, RunReport]:
    """Run every source in its own thread; the first one to fail stops the others and its error is raised."""
    reports: dict[str, RunReport] = {}
    errors: list[BaseException] = []

    def work(config: AnySourceConfig) -> None:
        try:
            reports[config.name] = run_source(config, settings, stop, once=once)
        except BaseException as e:
            log.error("source %s stopped: %s", config.name, e)
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=work, args=(c,), name=f"source-{c.name}", daemon=True) for c in configs]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)
    if errors:
        raise errors[0]
    return reports
