"""Start-up, readiness, the pipeline cache, multi-step pipelines and bad settings: real engine processes."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
from support.engine import ARROW_FILE, encode, features, publish_spec, run_model, start_engine, tensor_table
from support.procs import free_port, wait_for


def test_startup_log_prints_the_seeds_lines(one_step, pipeline_dir, tmp_path):
    eng = start_engine(one_step["pipeline_url"], tmp_path / "persist")
    try:
        model = eng.get("/models").json()["models"][0]
        lines = eng.log_text().splitlines()
    finally:
        eng.stop()
    start = lines.index(f"Fetching manifest and config for pipeline: {one_step['pipeline_url']}")
    block = [ln for ln in lines[start:] if not ln.startswith(("Started server", "Waiting for", "Application",
                                                               "Uvicorn running"))]
    assert block[:11] == [
        f"Fetching manifest and config for pipeline: {one_step['pipeline_url']}",
        "Fetching model layers",
        f"digest: sha256:{model['sha']}",
        f"  filename: {model['sha']}",
        "  name: ccfraud-logreg",
        "  type: model",
        "  runtime: onnx",
        f"  version: {model['version']}",
        "",
        "Fetched",
        "Starting engine",
    ]


def test_not_ready_until_the_pipeline_is_loaded(tmp_path, x_small):
    dead = f"127.0.0.1:{free_port()}/joey/pipelines/edge-pipeline:1"   # nothing listens there
    eng = start_engine(dead, tmp_path / "persist", wait_ready=False)
    try:
        assert eng.get("/health").status_code == 200
        # "being fetched" until the first attempt fails (at once: nothing listens), then "retrying"
        wait_for("the first failed fetch", lambda: "retrying" in eng.get("/ready").json()["error"], timeout=30)
        for path in ("/ready", "/pipelines", "/models"):
            r = eng.get(path)
            assert r.status_code == 503, path
            assert "not ready" in r.json()["error"] and "retrying" in r.json()["error"]
        r = eng.post("/infer", encode(tensor_table(x_small), ARROW_FILE), ARROW_FILE)
        assert r.status_code == 503 and "unreachable" in r.json()["error"]
        assert eng.post("/logs", b"{}", "application/json").json() == []
    finally:
        assert eng.stop() == 0
    assert "retrying in" in eng.log_text()


def test_restart_without_registry_serves_the_cached_pipeline(pipeline_dir, fresh_registry, tmp_path, x_small):
    record = publish_spec(pipeline_dir / "one.yaml", fresh_registry)
    persist = tmp_path / "persist"
    eng = start_engine(record["pipeline_url"], persist)
    first = eng.infer(tensor_table(x_small)).json()
    eng.stop()
    fresh_registry.stop()

    again = start_engine(record["pipeline_url"], persist)
    try:
        assert again.get("/pipelines").json()["pipelines"][0]["version"] == record["pipeline_version"]
        answer = again.infer(tensor_table(x_small)).json()
        assert [r["out"] for r in answer] == [r["out"] for r in first]
        logs = again.post("/logs", b"{}", "application/json").json()
        assert len(logs) == 2 * len(x_small)   # the log store survived the restart too
    finally:
        again.stop()
    text = again.log_text()
    assert "Registry unreachable" in text and "serving the cached pipeline edge-pipeline" in text
    assert record["pipeline_digest"] in text


def test_two_steps_chain_outputs_to_inputs(pipeline_dir, registry, tmp_path):
    record = publish_spec(pipeline_dir / "two.yaml", registry)
    x = features(16, seed=3)
    eng = start_engine(record["pipeline_url"], tmp_path / "persist")
    try:
        records = eng.infer(tensor_table(x)).json()
        models = eng.get("/models").json()["models"]
    finally:
        eng.stop()
    score = run_model(pipeline_dir / "models" / "ccfraud-logreg.onnx", x)
    expected = run_model(pipeline_dir / "models" / "calibrate.onnx", score)
    got = np.array([r["out"]["calibrated"] for r in records], np.float32)
    np.testing.assert_array_equal(got, expected)
    assert [m["name"] for m in models] == ["ccfraud-logreg", "calibrate"]
    meta = records[0]["metadata"]
    assert len(meta["elapsed"]) == 3
    assert json.loads(meta["last_model"]) == {"model_name": "calibrate", "model_sha": models[1]["sha"]}


def _engine_exit(env: dict, tmp_path) -> subprocess.CompletedProcess:
    """Run an engine that is expected to stop by itself."""
    base = {"JOEY_PERSIST_DIR": str(tmp_path / "persist"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "engine", "--host", "127.0.0.1", "--port", str(free_port())],
                          env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_bad_settings_print_one_line_and_exit_2(tmp_path):
    url = "127.0.0.1:5000/joey/pipelines/edge-pipeline:1"
    cases = [
        ({}, "PIPELINE_URL: not set"),
        ({"PIPELINE_URL": url, "CONFIG_CPUS": "-1"}, "CONFIG_CPUS"),
        ({"PIPELINE_URL": url, "DEBUG": "maybe"}, "DEBUG"),
        ({"PIPELINE_URL": url, "LOCAL_INFERENCE_STORAGE": "1Gi"}, "PLATEAU_PAGE_SIZE: must be set together"),
        ({"PIPELINE_URL": url, "LOCAL_INFERENCE_STORAGE": "1GB", "PLATEAU_PAGE_SIZE": "100"},
         "LOCAL_INFERENCE_STORAGE"),
        ({"PIPELINE_URL": "Not A Reference!"}, "PIPELINE_URL"),
    ]
    for env, words in cases:
        done = _engine_exit(env, tmp_path)
        assert done.returncode == 2, (env, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (env, done.stderr)
        assert done.stdout == ""


def test_a_pipeline_that_does_not_exist_ends_the_engine_with_a_clear_error(registry, tmp_path):
    url = f"{registry.host}/joey/pipelines/no-such-pipeline:v1"
    done = _engine_exit({"PIPELINE_URL": url, "JOEY_PLAIN_HTTP": "true"}, tmp_path)
    assert done.returncode == 3, done.stdout
    assert f"ERROR: not found: {url}" in done.stdout


def test_a_damaged_cache_is_pulled_again(one_step, tmp_path, x_small):
    persist = tmp_path / "persist"
    eng = start_engine(one_step["pipeline_url"], persist)
    expected = eng.infer(tensor_table(x_small)).json()
    eng.stop()
    digest_hex = one_step["pipeline_digest"].removeprefix("sha256:")
    model = persist / "pipelines" / digest_hex / "ccfraud-logreg.onnx"
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")

    again = start_engine(one_step["pipeline_url"], persist)
    try:
        assert [r["out"] for r in again.infer(tensor_table(x_small)).json()] == [r["out"] for r in expected]
    finally:
        again.stop()
    assert f"The cached copy of {one_step['pipeline_digest']} is damaged" in again.log_text()


def test_an_artifact_that_is_no_pipeline_is_refused(registry, tmp_path):
    from joey.descriptor import Descriptor, manifest_bytes
    from joey.registry import Registry

    reg = Registry(registry.host, plain_http=True)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    desc = Descriptor.for_bytes("application/vnd.oci.image.config.v1+json", config)
    reg.write_blob("joey/pipelines/not-a-pipeline", desc, io.BytesIO(config))
    reg.write_manifest("joey/pipelines/not-a-pipeline", "v1", manifest_bytes(desc, [], {}),
                       "application/vnd.oci.image.manifest.v1+json")
    url = f"{registry.host}/joey/pipelines/not-a-pipeline:v1"
    done = _engine_exit({"PIPELINE_URL": url, "JOEY_PLAIN_HTTP": "true"}, tmp_path)
    assert done.returncode == 5, done.stdout
    assert f"ERROR: {url} is not a Joey pipeline artifact" in done.stdout
