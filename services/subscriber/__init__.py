"""The subscriber: applies every change a department receives to its own store, idempotently and in order.

    from services.subscriber import load_subscribers, run_subscribers
    run_subscribers(load_subscribers(Path("onceonly.yaml")).select("housing_fund"), settings)

One worker per department (or several in one consumer group); every outcome becomes a receipt on ``receipts``,
every change that cannot be applied a dead letter on ``dlq.<department>``. A worker is a faust-streaming app
(``faust_app.py``, the default) or a confluent-kafka loop (``worker.py``, ``engine: loop``); both hand their batches
to ``applier.py``, which decides every change the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from onceonly.settings import Settings
from services.subscriber.codec import Codec, standard_codec
from services.subscriber.config import SubscriberConfig, SubscribersConfig, load_subscribers
from services.subscriber.faust_app import FaustSubscriber
from services.subscriber.host import Host
from services.subscriber.supervisor import Supervisor, tune_gc
from services.subscriber.worker import Subscriber

__all__ = [
    "Codec",
    "FaustSubscriber",
    "Host",
    "Subscriber",
    "SubscriberConfig",
    "SubscribersConfig",
    "Supervisor",
    "load_subscribers",
    "make_subscriber",
    "run_subscribers",
]


def make_subscriber(config: SubscriberConfig, settings: Settings, codec: Codec | None = None) -> Host:
    """A worker on the configured engine, wired to the data standard's serde (unless a codec is given)."""
    host = FaustSubscriber if config.engine == "faust" else Subscriber
    return host(config, settings, codec or standard_codec(settings))


def run_subscribers(configs: Sequence[SubscriberConfig], settings: Settings, *, install_signals: bool = True) -> None:
    """Run one worker per config until SIGTERM/SIGINT; returns within the configured grace period."""
    workers = [make_subscriber(c, settings) for c in configs]
    grace = min(c.shutdown_grace for c in configs)
    tune_gc()
    Supervisor(workers, grace=grace, name="subscriber").run(install_signals=install_signals)
