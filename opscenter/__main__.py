"""`joey-ops`: serve the Ops center.

    JOEY_OPS_TOKEN=... joey-ops --host 127.0.0.1 --port 8090 --database sqlite:///ops.db \
        --public-url https://ops.example.com --edge-registry edge-registry.example.com/edge

The edge registry's password and the object store's secret key are read from the environment only (a flag would
show in `ps`), and never logged.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

from joey import envvars, quantity
from joey.bundle import is_loopback
from joey.errors import ConfigError, JoeyError
from opscenter import objectstore
from opscenter.app import create_app
from opscenter.objectstore import ObjectStoreSettings
from opscenter.publisher import DEFAULT_LEASE_S, EdgeRegistry, PublishSettings, RegistryAccess
from opscenter.rollup import DEFAULT_HOT_HOURS, DEFAULT_HOT_RECORDS, DEFAULT_INTERVAL_S, RollupSettings

MIN_TOKEN_CHARS = 16
# Ops' own settings for publishing (only joey-ops reads them).
EDGE_REGISTRY = "JOEY_OPS_EDGE_REGISTRY"
EDGE_REGISTRY_USERNAME = "JOEY_OPS_EDGE_REGISTRY_USERNAME"
EDGE_REGISTRY_PASSWORD = "JOEY_OPS_EDGE_REGISTRY_PASSWORD"
EDGE_REGISTRY_PLAIN_HTTP = "JOEY_OPS_EDGE_REGISTRY_PLAIN_HTTP"
BUILD_REGISTRY_USERNAME = "JOEY_OPS_BUILD_REGISTRY_USERNAME"
BUILD_REGISTRY_PASSWORD = "JOEY_OPS_BUILD_REGISTRY_PASSWORD"
BUILD_REGISTRY_PLAIN_HTTP = "JOEY_OPS_BUILD_REGISTRY_PLAIN_HTTP"
PUBLISH_LEASE = "JOEY_OPS_PUBLISH_LEASE"
# The roll-up of logs into the object store (opscenter/rollup.py; the store's own: opscenter/objectstore.py).
HOT_HOURS = "JOEY_OPS_HOT_HOURS"
HOT_RECORDS = "JOEY_OPS_HOT_RECORDS"
ROLLUP_INTERVAL = "JOEY_OPS_ROLLUP_INTERVAL"


def _flag(given: bool, name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw not in ("", "0", "1", "true", "false"):
        raise ConfigError(name, f"{raw!r} is not a boolean; use true/false or 1/0")
    return given or raw in ("1", "true")


def _access(username: str | None, user_var: str, password_var: str, plain_http: bool) -> RegistryAccess:
    username = username or os.environ.get(user_var) or None
    password = os.environ.get(password_var) or None
    if bool(username) != bool(password):
        raise ConfigError(password_var if username else user_var, f"set together with "
                                                                  f"{user_var if username else password_var}")
    return RegistryAccess(username, password, plain_http)


def _publishing(args: argparse.Namespace) -> PublishSettings | None:
    """Where Ops publishes to (--edge-registry), and how it reads the build registries; None: not configured."""
    target = args.edge_registry or os.environ.get(EDGE_REGISTRY)
    if not target:
        return None
    edge = _access(args.edge_registry_username, EDGE_REGISTRY_USERNAME, EDGE_REGISTRY_PASSWORD,
                   _flag(args.edge_registry_plain_http, EDGE_REGISTRY_PLAIN_HTTP))
    build = _access(None, BUILD_REGISTRY_USERNAME, BUILD_REGISTRY_PASSWORD,
                    _flag(args.build_registry_plain_http, BUILD_REGISTRY_PLAIN_HTTP))
    lease = _positive(args.publish_lease, PUBLISH_LEASE, DEFAULT_LEASE_S, "--publish-lease")
    try:
        return PublishSettings(EdgeRegistry.parse(target, edge), build, lease)
    except JoeyError as e:
        raise ConfigError("--edge-registry", e.one_line()) from None


def _positive(given: str | None, variable: str, default: float, flag: str) -> float:
    text = given or os.environ.get(variable) or str(default)
    try:
        return quantity.positive_number(text)
    except ValueError as e:
        raise ConfigError(flag, str(e)) from None


def _rollup(args: argparse.Namespace) -> RollupSettings | None:
    """Where logs past the hot window go (--s3-bucket), and how big the window is; None: not configured."""
    store = ObjectStoreSettings.configured(args.s3_endpoint, args.s3_bucket, args.s3_prefix)
    if store is None:
        return None
    records = _positive(args.hot_records, HOT_RECORDS, DEFAULT_HOT_RECORDS, "--hot-records")
    if not records.is_integer():
        raise ConfigError("--hot-records", f"{records!r} is not a whole number of records")
    return RollupSettings(store, _positive(args.hot_hours, HOT_HOURS, DEFAULT_HOT_HOURS, "--hot-hours"),
                          int(records), _positive(args.rollup_interval, ROLLUP_INTERVAL, DEFAULT_INTERVAL_S,
                                                  "--rollup-interval"))


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
    p.add_argument("--edge-registry", help=f"HOST[:PORT]/NAMESPACE Ops publishes pipelines to for the edges (default "
                                           f"${EDGE_REGISTRY}); its credentials: ${EDGE_REGISTRY_USERNAME} and "
                                           f"${EDGE_REGISTRY_PASSWORD}")
    p.add_argument("--edge-registry-username", help=f"the edge registry's user (default ${EDGE_REGISTRY_USERNAME})")
    p.add_argument("--edge-registry-plain-http", action="store_true",
                   help=f"talk plain HTTP to the edge registry (loopback tests; or ${EDGE_REGISTRY_PLAIN_HTTP}=true)")
    p.add_argument("--build-registry-plain-http", action="store_true",
                   help="read the registries the packager pushed to over plain HTTP (or "
                        f"${BUILD_REGISTRY_PLAIN_HTTP}=true); their credentials: ${BUILD_REGISTRY_USERNAME}, "
                        f"${BUILD_REGISTRY_PASSWORD}")
    p.add_argument("--publish-lease", help=f"seconds a publisher's claim on a publish lasts unrenewed before another "
                                           f"takes it over (default ${PUBLISH_LEASE}, else {DEFAULT_LEASE_S:.0f})")
    p.add_argument("--s3-bucket", help=f"roll logs past the hot window into Parquet in this S3 bucket (default "
                                       f"${objectstore.BUCKET}; unset: logs stay in the database); credentials: "
                                       f"${objectstore.ACCESS_KEY_IDS[0]} and ${objectstore.SECRET_ACCESS_KEYS[0]} "
                                       f"(or ${objectstore.ACCESS_KEY_IDS[1]}, ${objectstore.SECRET_ACCESS_KEYS[1]})")
    p.add_argument("--s3-endpoint", help=f"http(s)://HOST[:PORT] of an S3-compatible store (default "
                                         f"${objectstore.ENDPOINT}, else AWS S3)")
    p.add_argument("--s3-prefix", help=f"key prefix of the Parquet objects (default ${objectstore.PREFIX}, else none)")
    p.add_argument("--hot-hours", help=f"hours of logs kept in the database (default ${HOT_HOURS}, else "
                                       f"{DEFAULT_HOT_HOURS:g})")
    p.add_argument("--hot-records", help=f"most records kept in the database per pipeline and edge (default "
                                         f"${HOT_RECORDS}, else {DEFAULT_HOT_RECORDS})")
    p.add_argument("--rollup-interval", help=f"seconds between roll-ups (default ${ROLLUP_INTERVAL}, else "
                                             f"{DEFAULT_INTERVAL_S:g})")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        token, public_url, database = _settings(args)
        app = create_app(database, token, public_url, publishing=_publishing(args), rollup=_rollup(args))
    except JoeyError as e:
        print(f"joey-ops: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
