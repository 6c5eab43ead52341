"""What both hosts of a subscriber worker (the Faust agent, the consumer loop) share: the applier, the worker's
names, and what tests, metrics and the operator look at (its partitions, assignments, counts and lag)."""

from __future__ import annotations

import threading

from connectors.sinks import Sink
from onceonly.settings import Settings
from services.subscriber.applier import Applier
from services.subscriber.codec import Codec
from services.subscriber.config import SubscriberConfig
from services.subscriber.polling import LagMeter


class Host:
    """One worker of one department's subscriber; a host adds ``run(stop)``."""

    def __init__(self, config: SubscriberConfig, settings: Settings, codec: Codec, *, sink: Sink | None = None) -> None:
        self.config = config
        self.settings = settings
        self.applier = Applier(config, settings, codec, sink)
        self.sink = self.applier.sink
        self.stats = self.applier.stats
        self.holder = config.department
        self.topics = [settings.topic(t) for t in config.topics]
        self.group_id = f"{settings.topic_prefix}{config.group}"
        self.assigned: set[tuple[str, int]] = set()
        self.assignments = 0
        self.lag = LagMeter(self.group_id)

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop``; the batch in flight is finished (or abandoned if its store is down) and committed."""
        raise NotImplementedError
