"""Fixtures for the Ops tests: real joey-ops servers on loopback over SQLite and a real throwaway PostgreSQL.

`backend` runs a test on both databases; the PostgreSQL half is marked `postgres` (it runs by default).
Tests that move time use `clocked_ops`: the same app served by uvicorn in this process, so its clock can be
set; everything else talks to a `joey-ops` process.
"""
from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from support.ops import JOEY_OPS, OpsServer, start_edge_registry, start_ops
from support.procs import free_port, wait_http

from opscenter.app import create_app


@pytest.fixture(scope="session")
def joey_ops() -> str:
    """The installed `joey-ops` console script."""
    return JOEY_OPS


# ---- PostgreSQL -------------------------------------------------------------------------------------------

@dataclass
class PgCluster:
    port: int
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    return found[-1]


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb refuses to run as root; the Debian package brings the `postgres` user.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def pg_cluster():
    """A fresh cluster in a temp dir on 127.0.0.1 (trust auth), stopped and deleted after the session."""
    # Not under pytest's tmp dir: that is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="joey-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run(_as_postgres_user([_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                                      "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)
    subprocess.run(_as_postgres_user([_pg_bin("pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
                                      "-o", f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off", "start"]),
                   check=True, capture_output=True)
    try:
        yield PgCluster(port, data)
    finally:
        subprocess.run(_as_postgres_user([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request) -> str:
    return request.param


@pytest.fixture()
def database_url(backend, request, tmp_path) -> str:
    """An empty database of this test's own on the chosen backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/db/ops.db"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = f"t_{uuid.uuid4().hex}"
    cluster.admin(f"CREATE DATABASE {name}")
    return cluster.url(name)


# ---- Ops servers ------------------------------------------------------------------------------------------

@pytest.fixture()
def ops(database_url, tmp_path):
    """A `joey-ops` process on a free loopback port, over this test's database."""
    server = start_ops(database_url, tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def edge_registry(tmp_path):
    """The registry Ops publishes into, wanting support.ops.EDGE_USER's login."""
    reg = start_edge_registry(tmp_path / "edge-registry")
    yield reg
    reg.stop()


class Clock:
    """Settable time for the in-process server: starts now, moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ClockedOps(OpsServer):
    clock: Clock = field(default_factory=Clock)


@pytest.fixture()
def clocked_ops(database_url):
    """The Ops app served by uvicorn on a loopback port in this process, with `.clock` under test control."""
    port, token, clock = free_port(), secrets.token_urlsafe(24), Clock()
    url = f"http://127.0.0.1:{port}"
    app = create_app(database_url, token, url, clock=clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_http(f"{url}/healthz")
        yield ClockedOps(url, token, database_url, clock=clock)
    finally:
        server.should_exit = True
        thread.join(30)


# ---- publish records as the packager makes them ------------------------------------------------------------

@pytest.fixture()
def make_record():
    """make_record(pipeline, version=None, **fields) -> a publish record like the packager's."""
    return publish_record


def publish_record(pipeline: str = "edge-pipeline", version: str | None = None, *, registry: str = "127.0.0.1:5000",
                   cpus: float = 4.0, memory: str = "3Gi", **extra) -> dict:
    version = version or str(uuid.uuid4())
    url = f"{registry}/joey/pipelines/{pipeline}:{version}"
    limits = {"cpu": cpus, "memory": memory}
    return {
        "pipeline_name": pipeline,
        "pipeline_version": version,
        "pipeline_url": url,
        "pipeline_digest": "sha256:" + "ab" * 32,
        "engine_url": f"{registry}/joey/engine:0.1.0",
        "engine_config": {"engine": {"resources": {"limits": limits, "requests": dict(limits), "accel": "none",
                                                   "arch": "x86", "gpu": False}},
                          "engineAux": {"autoscale": {"type": "none"}, "images": {}}},
        "helm": {"chart": f"{registry}/joey/charts/{pipeline}", "reference": f"{registry}/joey/charts@sha256:"
                 + "cd" * 32, "version": f"0.0.1-{version}", "values": {}},
        "docker_run_variables": {},
        "workspace_name": "edge-publish-demonstration",
        "created_by": "tester@example.com",
        "replaces": [],
        "user_images": [],
        **extra,
    }
