"""``python -m services.tracker``: the same as ``onceonly tracker run`` (settings from ``ONCEONLY_*``)."""

from __future__ import annotations

from onceonly.cli import main

if __name__ == "__main__":
    import sys

    sys.argv = ["onceonly", "tracker", "run", *sys.argv[1:]]
    main()
