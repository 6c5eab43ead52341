"""``onceonly tracker run``: fold every holder's receipts into Redis, so "who has applied this change?" is a lookup."""

from __future__ import annotations

from typing import Annotated

import typer

from onceonly.cli.common import StateDir, cli_settings, start_service
from onceonly.settings import DEFAULT_STATE_DIR

app = typer.Typer(
    help="Keep the per-change status (receipts) in Redis for status, trace and the scorecard.\n\n"
    "Example:  onceonly tracker run --metrics-port 9104"
)


@app.command()
def run(
    metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus metrics on this port")] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Run the tracker until SIGTERM or Ctrl-C. Redis down only delays it: receipts wait in Kafka.

    Run more than one to share the receipts partitions. Needs ONCEONLY_REDIS_URL (the stack sets it).

    Example:  onceonly tracker run --metrics-port 9104
    """
    from services.subscriber.codec import standard_codec
    from services.subscriber.supervisor import Supervisor
    from services.tracker.worker import Tracker

    settings = cli_settings(state_dir)
    start_service(settings, metrics_port)
    tracker = Tracker(settings, standard_codec(settings))
    Supervisor([tracker], name="tracker").run()
