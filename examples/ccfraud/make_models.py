"""Generate the example's two ONNX models with onnx.helper: no third-party model files are shipped.

- ccfraud-logreg.onnx: logistic regression over 29 features, input `tensor` float[N,29] -> `variable` float[N,1]
- ccfraud-mlp.onnx:    a 29-16-1 MLP (ReLU, sigmoid), input `dense_input` float[N,29] -> `dense_1` float[N,1]

Weights are fixed (seeded), so the files, their sha256 and the pipeline version are the same on every run.
Usage: python examples/ccfraud/make_models.py [OUT_DIR]   (default: examples/ccfraud/models)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = 29
OPSET = 17


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="joey-examples", producer_version="1")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def logistic_regression(input_name: str = "tensor", output_name: str = "variable", seed: int = 7) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.4, size=(FEATURES, 1)).astype(np.float32)
    b = np.array([-0.5], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", [input_name, "W"], ["z0"]),
         helper.make_node("Add", ["z0", "B"], ["z"]),
         helper.make_node("Sigmoid", ["z"], [output_name])],
        "ccfraud_logreg",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    return _model(graph)


def mlp(input_name: str = "dense_input", output_name: str = "dense_1", hidden: int = 16, seed: int = 11) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.3, size=(FEATURES, hidden)).astype(np.float32)
    b1 = rng.normal(0, 0.1, size=(hidden,)).astype(np.float32)
    w2 = rng.normal(0, 0.3, size=(hidden, 1)).astype(np.float32)
    b2 = np.array([0.1], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", [input_name, "W1", "B1"], ["h0"]),
         helper.make_node("Relu", ["h0"], ["h"]),
         helper.make_node("Gemm", ["h", "W2", "B2"], ["z"]),
         helper.make_node("Sigmoid", ["z"], [output_name])],
        "ccfraud_mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(b1, "B1"),
         numpy_helper.from_array(w2, "W2"), numpy_helper.from_array(b2, "B2")],
    )
    return _model(graph)


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, model in (("ccfraud-logreg.onnx", logistic_regression()), ("ccfraud-mlp.onnx", mlp())):
        path = out_dir / name
        data = model.SerializeToString(deterministic=True)
        paths.append(path)
        if path.exists() and path.read_bytes() == data:
            continue  # keep the mtime: the artifact's `created` comes from it
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return paths


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "models"
    for p in write(out):
        print(p)
