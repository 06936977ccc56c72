"""The peer: an ONNX model behind KServe's own Python model server, written the way KServe's custom-model guide
writes one (a `kserve.Model` subclass whose `predict` runs onnxruntime), speaking KServe's V1 protocol:
POST /v1/models/NAME:predict {"instances": [[...29 floats...], ...]} -> {"predictions": [[p], ...]}.

Runs in bench/.venv-peer (kserve + onnxruntime only), never in the project's venv.
Usage: python bench/peer_kserve.py --model FILE --http_port PORT [--threads 1]
"""
from __future__ import annotations

import argparse
import logging

import kserve
import numpy as np
import onnxruntime as ort


class OnnxModel(kserve.Model):
    def __init__(self, name: str, path: str, threads: int):
        super().__init__(name)
        self.path, self.threads = path, threads
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.ready = True
        return self.ready

    def predict(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        x = np.asarray(payload["instances"], dtype=np.float32)
        outputs = self.session.run(None, {self.input: x})
        return {"predictions": outputs[0].tolist()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", default="ccfraud")
    ap.add_argument("--http_port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    a, _ = ap.parse_known_args()
    model = OnnxModel(a.name, a.model, a.threads)
    server = kserve.ModelServer(http_port=a.http_port, enable_grpc=False, enable_latency_logging=False, workers=1)
    # No per-request log lines (access log, KServe's timing trace), as on the engine: at thousands of requests
    # a second logging would be the bottleneck. Set after the server is made: making it configures logging.
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).disabled = True
    server.start([model])


if __name__ == "__main__":
    main()
