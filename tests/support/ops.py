"""A real `joey-ops` process on loopback for tests, which can be stopped and started again on the same port and
database (an Ops outage as edges see it)."""
from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from joey.opsclient import OpsClient
from support.procs import free_port, start, stop, wait_http

JOEY_OPS = str(Path(sys.executable).with_name("joey-ops"))


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
