"""The servers under test, each pinned to core 0: the Joey engine (`python -m engine`, CONFIG_CPUS=1) serving a
pipeline from a local OCI layout, and the KServe peer from its own venv."""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

from support.procs import free_port, start, stop, wait_http

from bench.common import ROOT

SERVER_CORE = 0
CLIENT_CORE = 1
PEER_VENV = ROOT / "bench" / ".venv-peer"
PEER_PACKAGES = ["kserve", "onnxruntime"]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    log: Path

    def rss_mib(self) -> float:
        return _status_kib(self.proc.pid, "VmRSS") / 1024

    def peak_rss_mib(self) -> float:
        return _status_kib(self.proc.pid, "VmHWM") / 1024

    def cpu_s(self) -> float:
        """CPU time (user + system, all threads) the server has used so far: unlike wall time, the work a
        request costs stays readable when other processes share the core."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        stop(self.proc, timeout=30)


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def pinned(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(SERVER_CORE), *cmd]


def start_engine(pipeline_url: str, persist: Path, log: Path, extra_env: dict[str, str] | None = None) -> Server:
    """The engine; `extra_env` for what-if runs (e.g. MALLOC_ARENA_MAX, or PYTHONPATH with httptools)."""
    port = free_port()
    persist.mkdir(parents=True, exist_ok=True)
    env = {"PIPELINE_URL": pipeline_url, "JOEY_PERSIST_DIR": str(persist), "CONFIG_CPUS": "1",
           "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    # cwd: the persist dir, so that `-m engine` finds the package by the environment (PYTHONPATH in what-ifs)
    proc = start(pinned([sys.executable, "-m", "engine", "--host", "127.0.0.1", "--port", str(port)]), log,
                 env=env, cwd=persist)
    server = Server("engine", proc, port, log)
    _wait(server, f"http://127.0.0.1:{port}/ready")
    return server


def peer_python() -> Path:
    """bench/.venv-peer's python, making the venv (pip install kserve onnxruntime) the first time."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEER_VENV} (pip install {' '.join(PEER_PACKAGES)}) ...", flush=True)
        venv.create(PEER_VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


def peer_versions() -> dict[str, str]:
    out = subprocess.run([str(peer_python()), "-c", "from importlib.metadata import version; "
                          "print(version('kserve'), version('onnxruntime'))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return {"kserve": out[0], "onnxruntime": out[1]}


def start_peer(model: Path, log: Path) -> Server:
    port = free_port()
    proc = start(pinned([str(peer_python()), str(ROOT / "bench" / "peer_kserve.py"), "--model", str(model),
                         "--http_port", str(port), "--threads", "1"]), log)
    server = Server("kserve", proc, port, log)
    _wait(server, f"http://127.0.0.1:{port}/v1/models/ccfraud")
    return server


def _wait(server: Server, url: str) -> None:
    try:
        wait_http(url, ok=(200,), timeout=120, proc=server.proc, log=server.log)
    except BaseException:
        server.stop()
        raise
