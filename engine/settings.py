"""The engine's settings: the environment (the seeds' contract plus Joey's own) parsed once, up front.

Every problem is a ConfigError naming the variable, so `joey-engine` can print one line and exit 2 before it
touches the network or the disk.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from joey import envvars, quantity
from joey.bundle import EdgeBundle
from joey.errors import ConfigError, JoeyError
from joey.names import Ref, bare_registry, parse
from joey.signing import PublicKey, load_public_key

DEFAULT_PERSIST_DIR = Path("/persist")
DEFAULT_MAX_BODY = "64Mi"
DEFAULT_PORT = 8080
DEFAULT_HOST = "0.0.0.0"
# Inference-log capacity when LOCAL_INFERENCE_STORAGE is unset: enough for days of a small edge's traffic,
# small enough for the persistent volumes charts usually ask for.
DEFAULT_LOG_CAPACITY = 2**30
# Seconds between looks for a replacement pipeline (the tag re-resolved, Ops asked): a manifest GET and a small
# POST, cheap enough for a registry and an Ops center with thousands of edges.
DEFAULT_UPDATE_INTERVAL = 30.0
# Connection deadlines and cap (engine.connections, docs/engine-api.md "Connections"): long enough for a slow
# link to send a request head and keep a large body flowing, short enough that trickling sockets are soon
# closed; 1000 open connections cost a few tens of MiB and stay within a container's usual file limit.
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_KEEP_ALIVE_TIMEOUT = 5
DEFAULT_MAX_CONNECTIONS = 1000

_TRUE = {"true", "1"}
_FALSE = {"false", "0", ""}


@dataclass(frozen=True)
class Settings:
    pipeline_url: str             # PIPELINE_URL exactly as given (it is echoed in the start-up log)
    ref: Ref                      # where to fetch it from (OCI_REGISTRY prepended when the URL names no host)
    username: str | None          # OCI_USERNAME
    password: str | None          # OCI_PASSWORD
    plain_http: bool              # JOEY_PLAIN_HTTP: talk HTTP, not HTTPS, to the registry
    cpus: float | None            # CONFIG_CPUS; None: the pipeline's own deployment.cpus
    debug: bool                   # DEBUG: debug logging and an access log
    edge_bundle: EdgeBundle | None  # EDGE_BUNDLE, decoded: the edge's name and how to reach Ops
    log_capacity: int             # LOCAL_INFERENCE_STORAGE in bytes, else DEFAULT_LOG_CAPACITY
    page_size: int | None         # PLATEAU_PAGE_SIZE: rows per log upload page
    persist_dir: Path             # JOEY_PERSIST_DIR: pipeline cache and inference logs
    max_body: int                 # JOEY_MAX_BODY in bytes: larger requests get 413
    partition: str                # metadata.partition of every record: the edge's name, else the hostname
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    verify_key: PublicKey | None = None  # JOEY_VERIFY_KEY (PEM text or a path): load only what it signed
    update_interval: float = DEFAULT_UPDATE_INTERVAL  # JOEY_UPDATE_INTERVAL seconds; 0: no in-line updates
    oci_registry: str = ""        # OCI_REGISTRY without scheme: the host of URLs that name none
    header_timeout: float = DEFAULT_HEADER_TIMEOUT  # JOEY_HEADER_TIMEOUT: seconds for a request line and headers
    body_timeout: float = DEFAULT_BODY_TIMEOUT      # JOEY_BODY_TIMEOUT: seconds a body may pause between reads
    keep_alive_timeout: int = DEFAULT_KEEP_ALIVE_TIMEOUT  # JOEY_KEEP_ALIVE_TIMEOUT: idle kept-alive whole seconds
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # JOEY_MAX_CONNECTIONS: open connections before 503s

    def for_url(self, pipeline_url: str) -> Settings:
        """These settings serving another pipeline (an in-line update: the URL Ops names)."""
        return replace(self, pipeline_url=pipeline_url, ref=_reference(pipeline_url, self.oci_registry))

    @property
    def pipelines_dir(self) -> Path:
        return self.persist_dir / "pipelines"

    @property
    def logs_dir(self) -> Path:
        return self.persist_dir / "logs"

    def threads(self, pipeline_cpus: float) -> int:
        """onnxruntime intra-op threads: whole CPUs of CONFIG_CPUS (or of the pipeline's), at least one."""
        return max(1, int(self.cpus if self.cpus is not None else pipeline_cpus))


def from_env(env: Mapping[str, str] | None = None, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
             pipeline_url: str | None = None, plain_http: bool | None = None,
             persist_dir: Path | None = None) -> Settings:
    """Parse the environment. Arguments given here (the `--host/--port` flags, `packager serve REF`) win.

    PIPELINE_URL, CONFIG_CPUS and OCI_REGISTRY fall back to the EDGE_BUNDLE's values, as a chart that sets
    only the bundle expects.
    """
    env = os.environ if env is None else env
    raw_bundle = env.get(envvars.EDGE_BUNDLE, "").strip()
    bundle = EdgeBundle.decode(raw_bundle) if raw_bundle else None
    if bundle is not None:
        from_bundle = {envvars.PIPELINE_URL: bundle.pipeline_url, envvars.CONFIG_CPUS: bundle.config_cpus,
                       envvars.OCI_REGISTRY: bundle.oci_registry}
        env = {**{k: v for k, v in from_bundle.items() if v}, **{k: v for k, v in env.items() if v.strip()}}
    url = (pipeline_url if pipeline_url is not None else env.get(envvars.PIPELINE_URL, "")).strip()
    if not url:
        raise ConfigError(envvars.PIPELINE_URL, "not set; expected HOST/NAMESPACE/pipelines/NAME:VERSION "
                                                "or oci:DIR:REPO:TAG")
    registry = bare_registry(env.get(envvars.OCI_REGISTRY, ""))
    ref = _reference(url, registry)

    storage = env.get(envvars.LOCAL_INFERENCE_STORAGE, "").strip()
    page = env.get(envvars.PLATEAU_PAGE_SIZE, "").strip()
    if bool(storage) != bool(page):
        given, missing = ((envvars.LOCAL_INFERENCE_STORAGE, envvars.PLATEAU_PAGE_SIZE) if storage
                          else (envvars.PLATEAU_PAGE_SIZE, envvars.LOCAL_INFERENCE_STORAGE))
        raise ConfigError(missing, f"must be set together with {given}")
    capacity = DEFAULT_LOG_CAPACITY
    if storage:
        try:
            capacity = quantity.storage_bytes(storage)
        except ValueError as e:
            raise ConfigError(envvars.LOCAL_INFERENCE_STORAGE, str(e)) from None

    if port <= 0 or port > 65535:
        raise ConfigError("--port", f"{port} is not a TCP port (1-65535)")
    return Settings(
        pipeline_url=url,
        ref=ref,
        username=env.get(envvars.OCI_USERNAME) or None,
        password=env.get(envvars.OCI_PASSWORD) or None,
        plain_http=plain_http if plain_http is not None else _bool(env, envvars.PLAIN_HTTP),
        cpus=_cpus(env.get(envvars.CONFIG_CPUS, "").strip()),
        debug=_bool(env, envvars.DEBUG),
        edge_bundle=bundle,
        log_capacity=capacity,
        page_size=_positive_int(envvars.PLATEAU_PAGE_SIZE, page) if page else None,
        persist_dir=persist_dir or Path(env.get(envvars.PERSIST_DIR) or DEFAULT_PERSIST_DIR),
        max_body=_max_body(env.get(envvars.MAX_BODY, "").strip() or DEFAULT_MAX_BODY),
        partition=bundle.edge_name if bundle else socket.gethostname(),
        host=host,
        port=port,
        verify_key=_verify_key(env.get(envvars.VERIFY_KEY, "").strip()),
        update_interval=_interval(env.get(envvars.UPDATE_INTERVAL, "").strip()),
        oci_registry=registry,
        header_timeout=_seconds(env, envvars.HEADER_TIMEOUT, DEFAULT_HEADER_TIMEOUT),
        body_timeout=_seconds(env, envvars.BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT),
        keep_alive_timeout=_positive_int(envvars.KEEP_ALIVE_TIMEOUT, env.get(envvars.KEEP_ALIVE_TIMEOUT, "").strip()
                                         or str(DEFAULT_KEEP_ALIVE_TIMEOUT)),
        max_connections=_positive_int(envvars.MAX_CONNECTIONS, env.get(envvars.MAX_CONNECTIONS, "").strip()
                                      or str(DEFAULT_MAX_CONNECTIONS)),
    )


def _reference(url: str, registry: str) -> Ref:
    try:
        ref = parse(url)
        # PIPELINE_URL without a host (NAMESPACE/pipelines/NAME:VERSION) lives on OCI_REGISTRY.
        if not ref.is_registry and ref.layout is None and registry and "/" in url:
            ref = parse(f"{registry}/{url}")
    except JoeyError as e:
        raise ConfigError(envvars.PIPELINE_URL, e.one_line()) from None
    if ref.layout is not None and not ref.repository:
        raise ConfigError(envvars.PIPELINE_URL, f"{url!r} names a layout but no REPO:TAG (oci:DIR:REPO:TAG)")
    return ref


def _verify_key(raw: str) -> PublicKey | None:
    return load_public_key(raw, envvars.VERIFY_KEY) if raw else None


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(name, f"{env[name]!r} is not a boolean; use true/false or 1/0")


def _cpus(raw: str) -> float | None:
    if not raw:
        return None
    try:
        return quantity.positive_number(raw, "CPUs (e.g. 1, 2.5)")
    except ValueError as e:
        raise ConfigError(envvars.CONFIG_CPUS, str(e)) from None


def _interval(raw: str) -> float:
    if not raw:
        return DEFAULT_UPDATE_INTERVAL
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigError(envvars.UPDATE_INTERVAL, f"{raw!r} is not a number of seconds (0 turns in-line updates "
                                                   "off)")
    return seconds


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return quantity.positive_number(raw, "seconds")
    except ValueError as e:
        raise ConfigError(name, str(e)) from None


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(name, f"{raw!r} is not a positive whole number")
    return value


def _max_body(raw: str) -> int:
    try:
        return quantity.memory_bytes(raw)
    except ValueError as e:
        raise ConfigError(envvars.MAX_BODY, str(e)) from None
