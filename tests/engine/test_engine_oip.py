"""Open Inference Protocol v2: tritonclient (PyPI) against a real engine serving the seeds' ccfraud model gets
the seeds' numbers, by JSON and by binary tensors, and each call is a record in the engine's log store."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as triton
from support.engine import publish_spec, start_engine
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.reference

NAME = "edge-pipeline"
# The seeds' ccfraud-xgboost outputs for rows 0-4 of cc_data (test_engine_reference.py checks them on /infer).
SEED_NUMBERS = [[1.0094898]] * 4 + [[-1.9073486e-06]]
SEED_SCORES = np.array(SEED_NUMBERS, np.float32)


@pytest.fixture(scope="module")
def served(reference_dir, registry, tmp_path_factory):
    root = tmp_path_factory.mktemp("oip")
    spec = root / "pipeline.yaml"
    spec.write_text(f"name: {NAME}\nsteps:\n  - name: ccfraud-xgboost\n"
                    f"    model: {reference_dir / 'models' / 'ccfraud-xgboost.onnx'}\n    tensor_fields: [tensor]\n")
    record = publish_spec(spec, registry)
    eng = start_engine(record["pipeline_url"], root / "persist")
    client = triton.InferenceServerClient(eng.url.removeprefix("http://"))
    yield eng, client, record
    client.close()
    eng.stop()


@pytest.fixture(scope="module")
def rows(reference_dir) -> np.ndarray:
    data = json.loads((reference_dir / "data" / "cc_data_1k.df.json").read_text())
    return np.array([r["tensor"] for r in data[:5]], np.float32)


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
def test_infer_gives_the_seed_numbers_and_a_record(served, rows, binary):
    eng, client, record = served
    before = len(stored(eng))
    tensor = triton.InferInput("tensor", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    wanted = [triton.InferRequestedOutput("variable", binary_data=binary)]
    result = client.infer(NAME, [tensor], outputs=wanted, request_id="r-1")
    scores = result.as_numpy("variable")
    assert scores.dtype == np.float32 and scores.shape == (5, 1)
    assert scores.tolist() == SEED_SCORES.tolist()
    answer = result.get_response()
    assert answer["model_name"] == NAME and answer["model_version"] == record["pipeline_version"]
    assert answer["id"] == "r-1"
    assert ("binary_data_size" in answer["outputs"][0].get("parameters", {})) is binary

    records = stored(eng)
    assert len(records) == before + 5   # recorded before the answer came
    assert [r["out"]["variable"] for r in records[-5:]] == SEED_NUMBERS   # printed as the seeds print them
    assert np.array_equal(np.array([r["in"]["tensor"] for r in records[-5:]], np.float32), rows)


def test_outputs_default_to_binary_as_tritonclient_asks(served, rows):
    """No outputs named: tritonclient asks for all of them in binary (binary_data_output)."""
    eng, client, _ = served
    tensor = triton.InferInput("tensor", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer(NAME, [tensor])
    assert result.as_numpy("variable").tolist() == SEED_SCORES.tolist()
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 5 * 4


def test_bad_requests_are_400_naming_the_fault(served, rows):
    eng, client, _ = served
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
