"""``python -m services.gateway [onceonly.yaml] [--host H] [--port P]``: serve the gateway."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from onceonly.errors import OnceonlyError
from services.gateway import load_gateway_config, serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.gateway", description=__doc__)
    parser.add_argument("config", nargs="?", type=Path, help="onceonly.yaml with a 'gateway' section")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    try:
        serve(load_gateway_config(args.config), args.host, args.port)
    except OnceonlyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
