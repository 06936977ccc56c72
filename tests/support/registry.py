"""A real OCI registry (Debian's docker-registry, CNCF distribution) on a free loopback port."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.procs import free_port, start, stop, wait_http


@dataclass
class RunningRegistry:
    host: str                  # 127.0.0.1:PORT
    root: Path                 # storage root directory
    log: Path
    proc: subprocess.Popen
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def blob_file(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.root / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def requests_seen(self, method: str, path_part: str = "") -> int:
        """How many requests with this method (and path fragment) the registry logged."""
        n = 0
        for line in self.log.read_text(errors="replace").splitlines():
            if f'http.request.method={method}' in line and path_part in line and "response completed" in line:
                n += 1
        return n

    def stop(self) -> None:
        stop(self.proc)


def registry_binary() -> str:
    path = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(path).exists():
        raise RuntimeError("docker-registry is not installed: apt-get install -y docker-registry (see .ci/run)")
    return path


def start_registry(workdir: Path, *, username: str | None = None, password: str | None = None) -> RunningRegistry:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "joey-tests"},
    }
    if username:
        htpasswd = workdir / "htpasswd"
        out = subprocess.run(["htpasswd", "-Bbn", username, password], check=True, capture_output=True, text=True)
        htpasswd.write_text(out.stdout)
        config["auth"] = {"htpasswd": {"realm": "joey-tests", "path": str(htpasswd)}}
    cfg = workdir / "config.yml"
    cfg.write_text(yaml.safe_dump(config))
    log = workdir / "registry.log"
    proc = start([registry_binary(), "serve", str(cfg)], log)
    wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc, log=log)
    return RunningRegistry(f"127.0.0.1:{port}", workdir / "data", log, proc, username, password)
