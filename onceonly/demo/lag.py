"""Each holder's lag for the live table, and the distributor's backlog, as the operator tools measure them.

``services.operator.holder_lag``: the end of a topic is its high watermark from a fetch on the embedded broker (whose
ListOffsets answer is wrong, DESIGN.md), minus what the consumer group committed. A measurement opens a few
short-lived clients, so the table's figures come from a thread of their own, at most once a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from onceonly.errors import OnceonlyError
from onceonly.settings import Settings
from services.operator.holder_lag import lag_by_holder

log = logging.getLogger(__name__)


def distributor_backlog(settings: Settings) -> int:
    """Changes on the change topics the distributor has not distributed yet (``onceonly lag``'s distributor row)."""
    from services.operator.lag_report import DISTRIBUTOR_ROW, measure

    return next(row.waiting for row in measure(settings) if row.name == DISTRIBUTOR_ROW)


class LagWatch:
    """``lag_by_holder`` every ``interval`` seconds; ``lag`` holds the latest answer (empty until the first)."""

    def __init__(self, settings: Settings, holders: Iterable[str], interval: float = 1.0) -> None:
        self.settings = settings
        self.holders = list(holders)
        self.interval = interval
        self.lag: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(15)

    def measure(self) -> dict[str, int]:
        """Measure now (also after the services stopped, for the final table); the last answer if it fails."""
        try:
            self.lag = lag_by_holder(self.settings, self.holders)
        except OnceonlyError as e:  # a slow answer under load: the table keeps the previous figure
            log.debug("lag not measured: %s", e)
        return self.lag

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.measure()
            self._stop.wait(max(self.interval - (time.monotonic() - started), 0.0))
