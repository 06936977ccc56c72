"""Engine fixtures: small ONNX models, pipelines published to the real registry, running engines."""
from __future__ import annotations

from pathlib import Path

import make_models  # noqa: E402  (examples/ccfraud, put on sys.path by tests/conftest.py)
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from support.engine import publish_spec, start_engine  # noqa: E402
from support.specs import one_step as one_step_spec  # noqa: E402

ONE_STEP = one_step_spec(validation=True)

TWO_STEPS = """\
name: chained
steps:
  - name: ccfraud-logreg
    model: models/ccfraud-logreg.onnx
    tensor_fields: [tensor]
  - name: calibrate
    model: models/calibrate.onnx
    tensor_fields: [variable]
"""


def calibrate_model() -> onnx.ModelProto:
    """score[N,1] -> calibrated[N,1] = 2 * score - 0.25: a second step whose effect is easy to check."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["score", "A"], ["scaled"]), helper.make_node("Add", ["scaled", "B"], ["calibrated"])],
        "calibrate",
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("calibrated", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(np.array([2.0], np.float32), "A"),
         numpy_helper.from_array(np.array([-0.25], np.float32), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> Path:
    """A directory with models/ (the example's two models and `calibrate`) and the test specs."""
    root = tmp_path_factory.mktemp("engine-pipelines")
    make_models.write(root / "models")
    onnx.save(calibrate_model(), root / "models" / "calibrate.onnx")
    (root / "one.yaml").write_text(ONE_STEP)
    (root / "two.yaml").write_text(TWO_STEPS)
    return root


@pytest.fixture(scope="module")
def one_step(pipeline_dir, registry) -> dict:
    return publish_spec(pipeline_dir / "one.yaml", registry)


@pytest.fixture(scope="module")
def engine(one_step, tmp_path_factory):
    """One engine serving the one-step pipeline, shared by a module's tests."""
    eng = start_engine(one_step["pipeline_url"], tmp_path_factory.mktemp("persist"))
    yield eng
    eng.stop()


@pytest.fixture()
def x_small() -> np.ndarray:
    return np.random.default_rng(5).normal(0, 1, (4, 29)).astype(np.float32)
