"""Driving the edge end to end: the packager CLI in a subprocess, real engines as edges run them, polling Ops."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from support.engine import ARROW_FILE, RECORDS, EngineProc, start_engine, tensor_table  # noqa: E402
from support.ops import OpsProcess  # noqa: E402
from support.procs import wait_for  # noqa: E402
from support.specs import one_step  # noqa: E402

PIPELINE = "e2e-ccfraud"
SPEC = one_step(PIPELINE, validation=True)
# Small pages, so 1,000 records take many uploads; the store is bounded as an edge's would be.
ENGINE_ENV = {"PLATEAU_PAGE_SIZE": "100", "LOCAL_INFERENCE_STORAGE": "64Mi"}
DEADLINE_S = 60.0


def packager(args: list[str], ops: OpsProcess | None = None) -> str:
    """Run the `packager` CLI, pointed at `ops` through JOEY_OPS_URL/JOEY_OPS_TOKEN; its stdout."""
    env = dict(os.environ)
    if ops is not None:
        env.update(JOEY_OPS_URL=ops.url, JOEY_OPS_TOKEN=ops.token)
    out = subprocess.run([sys.executable, "-m", "packager.cli", *args], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def start_edge(bundle: str, persist: Path) -> EngineProc:
    """The engine as an edge runs it: everything from EDGE_BUNDLE (PIPELINE_URL left empty on purpose)."""
    return start_engine("", persist, EDGE_BUNDLE=bundle, JOEY_PLAIN_HTTP="1", **ENGINE_ENV)


def dataset(rows: int, seed: int) -> np.ndarray:
    """`rows` distinct rows of the 29 features the model takes."""
    return np.random.default_rng(seed).normal(0, 1, (rows, 29)).astype(np.float32)


def infer_all(engine: EngineProc, x: np.ndarray) -> None:
    """Every row of x through /infer, once: single rows and batches, Arrow and pandas-records in turn."""
    sizes = [1, 1, 17, 1, 50, 3, 100, 1, 28]
    start = i = 0
    while start < len(x):
        n = sizes[i % len(sizes)]
        engine.infer(tensor_table(x[start:start + n]), fmt=ARROW_FILE if i % 2 else RECORDS)
        start, i = start + n, i + 1


def ops_records(ops: OpsProcess, partition: str | None = None) -> list[dict]:
    """Every record Ops holds for the pipeline (or one edge of it), flattened, oldest first."""
    with ops.client() as c:
        return list(c.iter_logs(PIPELINE, partition=partition, page_size=10_000))


def wait_records(ops: OpsProcess, count: int, partition: str | None = None) -> list[dict]:
    def probe():
        records = ops_records(ops, partition)
        return records if len(records) >= count else None
    return wait_for(f"{count} records in Ops", probe)


def upload_status(engine: EngineProc) -> dict:
    r = engine.get("/status")
    assert r.status_code == 200, r.text
    return r.json()["upload"]


def rows_of(tensors) -> list[bytes]:
    """Each row of features as float32 bytes, sorted: equal lists mean each row came exactly once."""
    return sorted(np.asarray(t, np.float32).tobytes() for t in tensors)
