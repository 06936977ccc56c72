"""`joey-engine` / `python -m engine`: the edge inference server.

Configuration is the environment (docs/engine-api.md); the flags only place the listener for local runs.
Bad settings print one line on stderr and exit 2 before anything starts.
"""
from __future__ import annotations

import argparse
import sys

from engine.app import run
from engine.settings import DEFAULT_HOST, DEFAULT_PORT, from_env
from joey.errors import JoeyError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="joey-engine", description="Serve the pipeline named by PIPELINE_URL.")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    try:
        settings = from_env(host=args.host, port=args.port)
    except JoeyError as e:
        print(f"joey-engine: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
