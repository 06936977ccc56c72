"""Running the REAL engine (`python -m engine`) as a subprocess against pipelines published to a real registry."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.ipc as ipc
import requests

from packager.publish import publish
from support.procs import free_port, start, stop, wait_http

ARROW_FILE = "application/vnd.apache.arrow.file"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
RECORDS = "application/json; format=pandas-records"


def publish_spec(spec: Path, registry) -> dict:
    """Publish a spec (no chart) to the test registry; the record carries pipeline_url and the version."""
    return publish(spec, registry=f"{registry.host}/joey", plain_http=True, with_chart=False)


@dataclass
class EngineProc:
    url: str
    log: Path
    proc: subprocess.Popen
    env: dict = field(default_factory=dict)

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, data=None, content_type: str | None = None, accept: str | None = None,
             **kw) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        return requests.post(self.url + path, data=data, headers=headers, timeout=60, **kw)

    def infer(self, table: pa.Table, *, fmt: str = ARROW_FILE, accept: str | None = None, path: str = "/infer"):
        r = self.post(path, encode(table, fmt), fmt, accept)
        assert r.status_code == 200, r.text
        return r

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        stop(self.proc, timeout=30)
        return self.proc.returncode


def start_engine(pipeline_url: str, persist: Path, *, wait_ready: bool = True, **env: str) -> EngineProc:
    port = free_port()
    persist.mkdir(parents=True, exist_ok=True)
    log = persist.parent / f"{persist.name}-engine-{port}.log"
    full_env = {"PIPELINE_URL": pipeline_url, "JOEY_PERSIST_DIR": str(persist), "JOEY_PLAIN_HTTP": "true",
                "PYTHONUNBUFFERED": "1", **env}
    proc = start([sys.executable, "-m", "engine", "--host", "127.0.0.1", "--port", str(port)], log, env=full_env)
    eng = EngineProc(f"http://127.0.0.1:{port}", log, proc, full_env)
    try:
        wait_http(eng.url + ("/ready" if wait_ready else "/health"), ok=(200,), timeout=90, proc=proc, log=log)
    except BaseException:
        eng.stop()
        raise
    return eng


def encode(table: pa.Table, fmt: str) -> bytes:
    if fmt in (ARROW_FILE, ARROW_STREAM):
        sink = io.BytesIO()
        writer = ipc.new_file if fmt == ARROW_FILE else ipc.new_stream
        with writer(sink, table.schema) as w:
            w.write_table(table)
        return sink.getvalue()
    return json.dumps(table.to_pylist()).encode()


def arrow_answer(r: requests.Response) -> pa.Table:
    buf = pa.py_buffer(r.content)
    kind = r.headers["content-type"]
    return (ipc.open_file(buf) if kind == ARROW_FILE else ipc.open_stream(buf)).read_all()


def features(rows: int, width: int = 29, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (rows, width)).astype(np.float32)


def tensor_table(x: np.ndarray, name: str = "tensor") -> pa.Table:
    """A table with one fixed_size_list<float> column, like the seeds' cc_data files."""
    return pa.table({name: pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])})


def run_model(path: Path, x: np.ndarray) -> np.ndarray:
    """What onnxruntime itself computes for the model's first output."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]
