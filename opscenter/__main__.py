"""`joey-ops`: serve the Ops center.

    JOEY_OPS_TOKEN=... joey-ops --host 127.0.0.1 --port 8090 --database sqlite:///ops.db \
        --public-url https://ops.example.com
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

from joey import envvars
from joey.bundle import is_loopback
from joey.errors import ConfigError, JoeyError

from opscenter.app import create_app

MIN_TOKEN_CHARS = 16


def _settings(args: argparse.Namespace) -> tuple[str, str, str]:
    token = os.environ.get(envvars.OPS_TOKEN, "")
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(envvars.OPS_TOKEN, f"must be set to a secret of at least {MIN_TOKEN_CHARS} characters "
                                             "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)")
    public_url = args.public_url or os.environ.get(envvars.OPS_PUBLIC_URL)
    if not public_url:
        if not is_loopback(args.host):
            raise ConfigError("--public-url", f"required when listening on {args.host}: edge bundles must name "
                                              f"the URL edges reach Ops at (or set {envvars.OPS_PUBLIC_URL})")
        host = f"[{args.host}]" if ":" in args.host else args.host
        public_url = f"http://{host}:{args.port}"
    database = args.database or os.environ.get(envvars.OPS_DATABASE) or "sqlite:///joey-ops.db"
    return token, public_url, database


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="joey-ops", description="Joey's Ops center: publishes, edges, edge logs.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port to listen on (default 8090)")
    p.add_argument("--database", help=f"sqlite:///PATH or postgresql://... (default ${envvars.OPS_DATABASE}, "
                                      "else sqlite:///joey-ops.db)")
    p.add_argument("--public-url", help=f"URL edges reach this server at, e.g. https://ops.example.com (default "
                                        f"${envvars.OPS_PUBLIC_URL}, else http://HOST:PORT on loopback)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        token, public_url, database = _settings(args)
        app = create_app(database, token, public_url)
    except JoeyError as e:
        print(f"joey-ops: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
