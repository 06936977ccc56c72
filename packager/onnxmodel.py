"""Model inspection: what an ONNX file takes and gives, checked with onnx's own checker."""
from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
from onnx import helper

from .errors import ModelError
from .pipeline_config import ModelInfo, TensorSig

_CHUNK = 4 * 2**20


def sha256_file(path: Path) -> tuple[str, int]:
    """Hex sha256 and size of a file, streamed."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _sig(value: onnx.ValueInfoProto) -> TensorSig:
    t = value.type
    if not t.HasField("tensor_type"):
        return TensorSig(value.name, "unknown", None)
    elem = t.tensor_type.elem_type
    try:
        dtype = helper.tensor_dtype_to_np_dtype(elem).name
    except (KeyError, ValueError):
        dtype = onnx.TensorProto.DataType.Name(elem).lower()
    shape = None
    if t.tensor_type.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                      for d in t.tensor_type.shape.dim)
    return TensorSig(value.name, dtype, shape)


def inspect_model(path: Path, display: str | None = None) -> ModelInfo:
    """Check and describe an ONNX model file. Raises ModelError naming `display` (the spec's path)."""
    shown = display or str(path)
    try:
        onnx.checker.check_model(str(path))
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise ModelError(shown, "file not found") from None
    except Exception as e:  # onnx raises several unrelated types for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(shown, f"not a valid ONNX model ({first})") from None
    initializers = {i.name for i in model.graph.initializer}
    sha, size = sha256_file(path)
    return ModelInfo(
        sha256=sha,
        size=size,
        inputs=tuple(_sig(v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(_sig(v) for v in model.graph.output),
        opset={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        producer=" ".join(p for p in (model.producer_name, model.producer_version) if p),
    )
