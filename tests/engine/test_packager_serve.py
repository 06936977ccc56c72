"""`packager serve REF`: the engine runs a pipeline from the local store, as the seeds' simulated edge."""
from __future__ import annotations

import io
import json
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import requests
from support.procs import free_port, stop, wait_http
from support.specs import one_step

from packager.build import build

SPEC = one_step()


def test_serve_from_the_local_store(example_models, write_spec, tmp_path):
    built = build(write_spec(SPEC))
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "packager.cli", "serve",
                                 f"edge-pipeline:{built.artifact.config.version}", "--port", str(port),
                                 "--persist", str(tmp_path / "persist")], stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", ok=(200,), proc=proc, log=log)
        rows = np.random.default_rng(1).standard_normal((3, 29)).astype(np.float32)
        table = pa.table({"tensor": pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), 29)})
        sink = io.BytesIO()
        with pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
        r = requests.post(f"http://127.0.0.1:{port}/infer", data=sink.getvalue(),
                          headers={"Content-Type": "application/vnd.apache.arrow.file"})
        assert r.status_code == 200, r.text
        records = r.json()
        assert len(records) == 3 and set(records[0]["out"]) == {"variable"}
        assert json.loads(records[0]["metadata"]["last_model"])["model_name"] == "ccfraud-logreg"
        pipelines = requests.get(f"http://127.0.0.1:{port}/pipelines").json()
        assert pipelines == {"pipelines": [{"id": "edge-pipeline", "version": built.artifact.config.version,
                                            "status": "Running"}]}
    finally:
        proc.send_signal(signal.SIGTERM)
        stop(proc)
    assert proc.returncode == 0
    assert "Fetching manifest and config for pipeline:" in log.read_text()
