"""``python -m services.gateway [onceonly.yaml] [--host H] [--port P]``: the same as ``onceonly gateway serve``."""

from __future__ import annotations

from onceonly.cli import main

if __name__ == "__main__":
    import sys

    sys.argv = ["onceonly", "gateway", "serve", *sys.argv[1:]]
    main()
