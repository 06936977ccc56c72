"""Model inspection: the large-model path checks a stand-in of the graph and the weights' sizes, not their bytes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from joey.errors import ModelError
from packager.onnxmodel import STAND_IN_MIN_BYTES, _stand_in, inspect_model


def _model(weights: onnx.TensorProto, op: str = "MatMul") -> onnx.ModelProto:
    g = helper.make_graph([helper.make_node(op, ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", weights.dims[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", weights.dims[1]])],
                          [weights])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_stand_in_keeps_the_structure_for_the_checker():
    m = _model(numpy_helper.from_array(np.ones((8, 4), np.float32), "W"))
    stand_in = _stand_in(m.SerializeToString())
    onnx.checker.check_model(stand_in)
    checked = onnx.ModelProto.FromString(stand_in)
    assert [n.op_type for n in checked.graph.node] == ["MatMul"]
    assert checked.graph.initializer[0].name == "W" and len(checked.graph.initializer[0].raw_data) == 4


def test_stand_in_refuses_a_payload_of_the_wrong_size():
    w = numpy_helper.from_array(np.ones((8, 4), np.float32), "W")
    w.raw_data = w.raw_data[:-4]
    with pytest.raises(ValueError, match="raw_data size"):
        _stand_in(_model(w).SerializeToString())


def test_unusual_weights_fall_back_to_the_full_check():
    typed = helper.make_tensor("W", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0])  # float_data, not raw
    assert _stand_in(_model(typed).SerializeToString()) is None


def test_a_large_model_is_inspected_and_a_broken_one_refused(tmp_path):
    rows = STAND_IN_MIN_BYTES // (4 * 64) + 1
    w = numpy_helper.from_array(np.zeros((rows, 64), np.float32), "W")
    good = tmp_path / "good.onnx"
    onnx.save(_model(w), good)
    info = inspect_model(good)
    assert info.inputs[0].name == "x" and info.outputs[0].shape == ("batch", 64) and info.size > STAND_IN_MIN_BYTES
    # a node the checker does not know is still caught through the stand-in
    unknown = tmp_path / "unknown.onnx"
    onnx.save(_model(w, op="NoSuchOp"), unknown)
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        inspect_model(unknown)
    # and so is a weight whose payload lost its last element
    w.raw_data = w.raw_data[:-4]
    short = tmp_path / "short.onnx"
    onnx.save(_model(w), short)
    with pytest.raises(ModelError, match="raw_data size"):
        inspect_model(short)
