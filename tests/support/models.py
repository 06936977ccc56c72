"""Generated ONNX models of a chosen size, for tests of large transfers."""
from __future__ import annotations

from pathlib import Path


def identity_model(path: Path, mib: int, *, valid: bool = True) -> None:
    """An Identity model carrying `mib` MiB of zero weights; with valid=False an unknown op the checker refuses."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((mib * 2**20 // 4 // 64, 64), dtype=np.float32), "W")
    g = helper.make_graph([helper.make_node("Identity" if valid else "NoSuchOp", ["x"], ["y"])], "big",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])], [w])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
