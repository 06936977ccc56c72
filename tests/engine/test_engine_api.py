"""The engine's HTTP API, against a real engine process serving a pipeline pulled from a real registry."""
from __future__ import annotations

import hashlib
import json
import socket
import uuid

import numpy as np
import pyarrow as pa
import pytest
import requests
from support.engine import ARROW_FILE, ARROW_STREAM, RECORDS, arrow_answer, encode, features, run_model, tensor_table

ROWS = 64


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return features(ROWS)


@pytest.fixture(scope="module")
def expected(pipeline_dir, x) -> np.ndarray:
    return run_model(pipeline_dir / "models" / "ccfraud-logreg.onnx", x)


def test_pipelines_and_models_have_the_seeds_shapes(engine, one_step, pipeline_dir):
    version = one_step["pipeline_version"]
    assert engine.get("/pipelines").json() == {
        "pipelines": [{"id": "edge-pipeline", "version": version, "status": "Running"}]}
    models = engine.get("/models").json()["models"]
    assert len(models) == 1
    assert list(models[0]) == ["name", "sha", "status", "version"]
    assert models[0]["name"] == "ccfraud-logreg" and models[0]["status"] == "Running"
    assert models[0]["sha"] == hashlib.sha256((pipeline_dir / "models" / "ccfraud-logreg.onnx").read_bytes()).hexdigest()
    assert str(uuid.UUID(models[0]["version"])) == models[0]["version"]
    assert engine.get("/health").status_code == 200
    assert engine.get("/ready").json()["version"] == version


def test_records_have_the_seeds_shape(engine, one_step, x, expected):
    r = engine.infer(tensor_table(x))
    assert r.headers["content-type"] == RECORDS
    records = r.json()
    assert len(records) == ROWS
    first = records[0]
    assert list(first) == ["time", "in", "out", "anomaly", "metadata"]
    assert isinstance(first["time"], int) and first["time"] > 1_600_000_000_000
    assert list(first["in"]) == ["tensor"] and len(first["in"]["tensor"]) == 29
    assert list(first["out"]) == ["variable"]
    assert list(first["metadata"]) == ["last_model", "pipeline_version", "elapsed", "dropped", "partition"]
    meta = first["metadata"]
    sha = engine.get("/models").json()["models"][0]["sha"]
    assert meta["last_model"] == json.dumps({"model_name": "ccfraud-logreg", "model_sha": sha},
                                            separators=(",", ":"))
    assert meta["pipeline_version"] == one_step["pipeline_version"]
    assert len(meta["elapsed"]) == 2 and all(isinstance(n, int) and n >= 0 for n in meta["elapsed"])
    assert meta["dropped"] == [] and meta["partition"] == socket.gethostname()
    # Values print as the shortest text that reads back to the same float32.
    got = np.array([rec["out"]["variable"] for rec in records], np.float32)
    np.testing.assert_array_equal(got, expected)
    sent = np.array([rec["in"]["tensor"] for rec in records], np.float32)
    np.testing.assert_array_equal(sent, x)
    assert f'"variable":[{np.format_float_positional(expected[0, 0], unique=True)}]' in r.text


@pytest.mark.parametrize("fmt", [ARROW_STREAM, RECORDS, "application/json"])
def test_every_input_format_gives_the_same_answer(engine, x, expected, fmt):
    table = tensor_table(x) if fmt != RECORDS else pa.table({"tensor": x.tolist()})
    records = engine.infer(table, fmt=fmt).json()
    got = np.array([rec["out"]["variable"] for rec in records], np.float32)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("accept", [ARROW_FILE, ARROW_STREAM])
def test_accept_arrow_gives_one_flat_table(engine, one_step, x, expected, accept):
    r = engine.infer(tensor_table(x), accept=accept)
    assert r.headers["content-type"] == accept
    table = arrow_answer(r)
    assert table.column_names == ["time", "in.tensor", "out.variable", "anomaly.count", "anomaly.likely_fraud",
                                  "metadata.last_model", "metadata.pipeline_version", "metadata.elapsed",
                                  "metadata.dropped", "metadata.partition"]
    assert table.num_rows == ROWS
    got = np.array(table.column("out.variable").to_pylist(), np.float32)
    np.testing.assert_array_equal(got, expected)
    assert set(table.column("metadata.pipeline_version").to_pylist()) == {one_step["pipeline_version"]}


def test_validations_flag_rows_in_anomaly(engine, x, expected):
    records = engine.infer(tensor_table(x)).json()
    flagged = expected[:, 0] > 0.5
    assert 0 < flagged.sum() < ROWS, "the test data should flag some rows and not others"
    assert [rec["anomaly"]["likely_fraud"] for rec in records] == flagged.tolist()
    assert [rec["anomaly"]["count"] for rec in records] == flagged.astype(int).tolist()


def test_named_pipeline_route(engine, x, expected):
    r = engine.post("/pipelines/edge-pipeline", encode(tensor_table(x), ARROW_FILE), ARROW_FILE)
    assert r.status_code == 200
    np.testing.assert_array_equal(np.array([rec["out"]["variable"] for rec in r.json()], np.float32), expected)
    r = engine.post("/pipelines/other", encode(tensor_table(x), ARROW_FILE), ARROW_FILE)
    assert r.status_code == 404 and "'other'" in r.json()["error"] and "edge-pipeline" in r.json()["error"]


def test_logs_return_what_was_inferred(engine, x):
    y = features(5, seed=42)
    answered = engine.infer(tensor_table(y)).json()
    r = engine.post("/logs", json.dumps({"limit": 5}), "application/json")
    assert r.status_code == 200 and r.headers["content-type"] == RECORDS
    assert r.json() == answered
    everything = engine.post("/logs", b"{}", "application/json").json()
    assert len(everything) > 5 and everything[-5:] == answered
    table = arrow_answer(engine.post("/logs", b'{"limit": 5}', "application/json", accept=ARROW_FILE))
    np.testing.assert_array_equal(np.array(table.column("in.tensor").to_pylist(), np.float32), y)


@pytest.mark.parametrize("body, fmt, status, words", [
    (b"not arrow at all", ARROW_FILE, 400, ["malformed Arrow file"]),
    (b"ARROW1\x00\x00garbage", ARROW_STREAM, 400, ["malformed Arrow stream"]),
    (b'[{"tensor": [1.0, 2.0', RECORDS, 400, ["malformed JSON"]),
    (b'{"tensor": [[1.0]]}', RECORDS, 400, ["expected an array of records"]),
    (b'[{"features": [1.0]}]', RECORDS, 400, ["missing column 'tensor'", "'features'"]),
    (json.dumps([{"tensor": [0.5] * 28}]).encode(), RECORDS, 400, ["'tensor'", "28", "29"]),
    (json.dumps([{"tensor": [0.5] * 29}, {"tensor": [0.5] * 3}]).encode(), RECORDS, 400, ["'tensor'", "row 1"]),
    (json.dumps([{"tensor": ["a"] * 29}]).encode(), RECORDS, 400, ["'tensor'", "string", "float32"]),
    (json.dumps([{"tensor": [0.5] * 28 + ["x"]}]).encode(), RECORDS, 400, ["'tensor'"]),
    (json.dumps([{"tensor": [0.5] * 28 + [None]}]).encode(), RECORDS, 400, ["'tensor'", "null", "row 0"]),
    (b"[]", RECORDS, 400, ["no rows"]),
    (b"a,b\n1,2\n", "text/csv", 415, ["text/csv", ARROW_FILE]),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(engine, x, body, fmt, status, words):
    r = engine.post("/infer", body, fmt)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    for w in words:
        assert w in message
    assert engine.get("/ready").status_code == 200
    assert engine.infer(tensor_table(x[:2])).status_code == 200


def test_wrong_width_in_arrow_names_column_and_widths(engine):
    r = engine.post("/infer", encode(tensor_table(features(3, width=30)), ARROW_FILE), ARROW_FILE)
    assert r.status_code == 400
    assert r.json()["error"] == "column 'tensor' has 30 value(s) per row; the model expects 29"


def test_unknown_accept_is_406(engine, x):
    r = engine.post("/infer", encode(tensor_table(x), ARROW_FILE), ARROW_FILE, accept="text/csv")
    assert r.status_code == 406 and "text/csv" in r.json()["error"]


def test_bad_logs_query_is_400(engine):
    r = engine.post("/logs", b'{"limit": -3}', "application/json")
    assert r.status_code == 400 and "limit" in r.json()["error"]


def test_unknown_path_is_json_404(engine):
    r = engine.get("/nope")
    assert r.status_code == 404 and "/nope" in r.json()["error"]


def test_oversized_bodies_are_413_declared_or_streamed(one_step, tmp_path, x):
    from support.engine import start_engine

    eng = start_engine(one_step["pipeline_url"], tmp_path / "persist", JOEY_MAX_BODY="4Ki")
    try:
        big = encode(tensor_table(features(100)), ARROW_FILE)
        r = eng.post("/infer", big, ARROW_FILE)
        assert r.status_code == 413 and "4096" in r.json()["error"]

        def chunks():   # no Content-Length: the engine has to count
            for i in range(0, len(big), 1024):
                yield big[i:i + 1024]

        r = eng.post("/infer", chunks(), ARROW_FILE)
        assert r.status_code == 413 and "4096" in r.json()["error"]
        assert eng.infer(tensor_table(x[:4])).status_code == 200
    finally:
        assert eng.stop() == 0   # SIGTERM: drain and exit cleanly
    with pytest.raises(requests.ConnectionError):
        eng.get("/health")
