"""Open Inference Protocol v2: tritonclient (PyPI) against a real engine gets the model's numbers, by JSON and by
binary tensors, and each call is a record in the engine's log store. Two cases: the example's generated model
(always; numbers checked against onnxruntime in process) and the seeds' ccfraud-xgboost (with ../shared/reference;
the seeds' own numbers, printed as the seeds print them)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from support.engine import publish_spec, start_engine
from tritonclient.utils import InferenceServerException

NAME = "edge-pipeline"
# The seeds' ccfraud-xgboost outputs for rows 0-4 of cc_data (test_engine_reference.py checks them on /infer).
SEED_NUMBERS = [[1.0094898]] * 4 + [[-1.9073486e-06]]


@dataclass(frozen=True)
class Case:
    step: str
    model: Path
    rows: np.ndarray          # float32 [5, 29]
    scores: np.ndarray        # float32 [5, 1]: what the model answers for rows
    logged: list | None       # the texts /logs must print for the scores (the seeds' case), else None

    def agrees(self, answered: np.ndarray) -> bool:
        """The seeds' numbers exactly; onnxruntime's in-process numbers to float32 rounding (its kernels may
        sum in another order than the engine's session)."""
        if self.logged is not None:
            return answered.tolist() == self.scores.tolist()
        return bool(np.allclose(answered, self.scores, rtol=1e-6, atol=0))


def _generated(root: Path) -> Case:
    import make_models  # examples/ccfraud, put on sys.path by tests/conftest.py

    model = next(p for p in make_models.write(root / "models") if p.stem == "ccfraud-logreg")
    rows = np.random.default_rng(3).normal(size=(5, 29)).astype(np.float32)
    scores = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"tensor": rows})[0]
    return Case("ccfraud-logreg", model, rows, scores, None)


def _seeds(reference_dir: Path) -> Case:
    data = json.loads((reference_dir / "data" / "cc_data_1k.df.json").read_text())
    rows = np.array([r["tensor"] for r in data[:5]], np.float32)
    return Case("ccfraud-xgboost", reference_dir / "models" / "ccfraud-xgboost.onnx", rows,
                np.array(SEED_NUMBERS, np.float32), SEED_NUMBERS)


@pytest.fixture(scope="module", params=["generated", pytest.param("seeds", marks=pytest.mark.reference)])
def case(request, tmp_path_factory) -> Case:
    if request.param == "seeds":
        return _seeds(request.getfixturevalue("reference_dir"))
    return _generated(tmp_path_factory.mktemp("oip-models"))


@pytest.fixture(scope="module")
def served(case, registry, tmp_path_factory):
    root = tmp_path_factory.mktemp("oip")
    spec = root / "pipeline.yaml"
    spec.write_text(f"name: {NAME}\nsteps:\n  - name: {case.step}\n"
                    f"    model: {case.model}\n    tensor_fields: [tensor]\n")
    record = publish_spec(spec, registry)
    eng = start_engine(record["pipeline_url"], root / "persist")
    client = triton.InferenceServerClient(eng.url.removeprefix("http://"))
    yield eng, client, record
    client.close()
    eng.stop()


def stored(eng) -> list[dict]:
    r = eng.post("/logs", b"{}", "application/json")
    assert r.status_code == 200, r.text
    return r.json()


def test_server_and_model_metadata(served):
    eng, client, record = served
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata(NAME)
    assert meta["name"] == NAME and meta["versions"] == [record["pipeline_version"]]
    assert meta["inputs"] == [{"name": "tensor", "datatype": "FP32", "shape": [-1, 29]}]
    assert meta["outputs"] == [{"name": "variable", "datatype": "FP32", "shape": [-1, 1]}]
    with pytest.raises(InferenceServerException, match="not found: model 'other'"):
        client.get_model_metadata("other")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_gives_the_models_numbers_and_a_record(served, case, binary):
    eng, client, record = served
    rows = case.rows
    before = len(stored(eng))
    tensor = triton.InferInput("tensor", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    wanted = [triton.InferRequestedOutput("variable", binary_data=binary)]
    result = client.infer(NAME, [tensor], outputs=wanted, request_id="r-1")
    scores = result.as_numpy("variable")
    assert scores.dtype == np.float32 and scores.shape == (5, 1)
    assert case.agrees(scores)
    answer = result.get_response()
    assert answer["model_name"] == NAME and answer["model_version"] == record["pipeline_version"]
    assert answer["id"] == "r-1"
    assert ("binary_data_size" in answer["outputs"][0].get("parameters", {})) is binary

    records = stored(eng)
    assert len(records) == before + 5   # recorded before the answer came
    logged = [r["out"]["variable"] for r in records[-5:]]
    assert np.array_equal(np.array(logged, np.float32), scores)   # the log holds what was answered
    if case.logged is not None:
        assert logged == case.logged   # printed as the seeds print them
    assert np.array_equal(np.array([r["in"]["tensor"] for r in records[-5:]], np.float32), rows)


def test_outputs_default_to_binary_as_tritonclient_asks(served, case):
    """No outputs named: tritonclient asks for all of them in binary (binary_data_output)."""
    eng, client, _ = served
    rows = case.rows
    tensor = triton.InferInput("tensor", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer(NAME, [tensor])
    assert case.agrees(result.as_numpy("variable"))
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 5 * 4


def test_bad_requests_are_400_naming_the_fault(served, case):
    eng, client, _ = served
    rows = case.rows
    tensor = triton.InferInput("tensor", [5, 28], "FP32")
    tensor.set_data_from_numpy(rows[:, :28])
    with pytest.raises(InferenceServerException, match="28 value.s. per row; the model expects 29") as e:
        client.infer(NAME, [tensor])
    assert e.value.status() == "400"
    r = eng.post(f"/v2/models/{NAME}/infer", json.dumps({"inputs": [
        {"name": "tensor", "shape": [1, 29], "datatype": "FP32", "data": [1.0] * 28}]}))
    assert r.status_code == 400 and "holds 29 value(s), data has 28" in r.json()["error"]
    before = len(stored(eng))
    r = eng.post(f"/v2/models/{NAME}/infer", json.dumps({"outputs": [{"name": "score"}], "inputs": [
        {"name": "tensor", "shape": [1, 29], "datatype": "FP32", "data": rows[0].tolist()}]}))
    assert r.status_code == 400 and "outputs[0] names 'score'; the model's outputs are variable" in r.json()["error"]
    assert len(stored(eng)) == before   # refused before it ran: nothing recorded
