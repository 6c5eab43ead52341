"""``python -m services.tracker``: fold receipts into Redis until SIGTERM (settings from ``ONCEONLY_*``)."""

from __future__ import annotations

import logging
import sys

from onceonly.errors import OnceonlyError
from onceonly.settings import load_settings
from services.subscriber.codec import standard_codec
from services.subscriber.supervisor import Supervisor
from services.tracker.worker import Tracker


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings()
    try:
        tracker = Tracker(settings, standard_codec(settings))
        Supervisor([tracker], name="tracker").run()
    except OnceonlyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
