"""A real `joey-ops` process on loopback for tests, which can be stopped and started again on the same port and
database (an Ops outage as edges see it); and one that publishes into a real edge registry that wants a login."""
from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

from joey.opsclient import OpsClient
from support.procs import free_port, start, stop, wait_http
from support.registry import RunningRegistry, start_registry

JOEY_OPS = str(Path(sys.executable).with_name("joey-ops"))
EDGE_USER = "edge-robot"


@dataclass
class OpsServer:
    url: str
    token: str
    database_url: str

    def client(self, token: str | None = None) -> OpsClient:
        return OpsClient(self.url, token or self.token)


@dataclass
class OpsProcess(OpsServer):
    port: int
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "joey-ops.log"

    def start(self) -> None:
        self.proc = start([JOEY_OPS, "--host", "127.0.0.1", "--port", str(self.port), "--database",
                           self.database_url, "--log-level", "warning"], self.log,
                          env={"JOEY_OPS_TOKEN": self.token}, cwd=self.workdir)
        wait_http(f"{self.url}/healthz", proc=self.proc, log=self.log)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def start_ops(database_url: str, workdir: Path) -> OpsProcess:
    """`joey-ops` on a free loopback port over `database_url`, its log in workdir/joey-ops.log."""
    port = free_port()
    server = OpsProcess(f"http://127.0.0.1:{port}", secrets.token_urlsafe(24), database_url, port, workdir)
    server.start()
    return server


@dataclass
class PublishingOps(OpsProcess):
    """joey-ops with an edge registry (its password in the environment only)."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.proc = start([JOEY_OPS, "--host", "127.0.0.1", "--port", str(self.port), "--database",
                           self.database_url, "--log-level", "info", *self.args], self.log,
                          env={"JOEY_OPS_TOKEN": self.token, **self.env}, cwd=self.workdir)
        wait_http(f"{self.url}/healthz", proc=self.proc, log=self.log)

    def call(self, endpoint: str, body: dict) -> requests.Response:
        """A request as seed 003 writes it."""
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        return requests.post(f"{self.url}/v1/api/pipelines/{endpoint}", headers=headers, json=body, timeout=30)


def start_edge_registry(workdir: Path) -> RunningRegistry:
    """A loopback registry that wants EDGE_USER's login (a fresh password): Ops' edge registry."""
    return start_registry(workdir, username=EDGE_USER, password=secrets.token_urlsafe(16))


def start_publishing_ops(token: str, database_url: str, workdir: Path, edge: RunningRegistry) -> PublishingOps:
    """`joey-ops` on a free loopback port publishing into `edge`/edge over plain HTTP, its claims leased for 2 s
    (so a killed replica's copy is taken over within a test)."""
    port = free_port()
    server = PublishingOps(f"http://127.0.0.1:{port}", token, database_url, port, workdir,
                           args=["--edge-registry", f"{edge.host}/edge", "--edge-registry-plain-http",
                                 "--build-registry-plain-http", "--publish-lease", "2"],
                           env={"JOEY_OPS_EDGE_REGISTRY_USERNAME": EDGE_USER,
                                "JOEY_OPS_EDGE_REGISTRY_PASSWORD": edge.password})
    server.start()
    return server
