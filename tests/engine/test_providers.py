"""Execution providers from the artifact's `accel`: the accelerator's provider then CPU; without it, a fallback
to CPU with a log line, or a one-line refusal when the publish demands it (accel with gpus > 0). This
onnxruntime is the CPU build: CUDA and OpenVINO are absent here, as in the default engine image."""
from __future__ import annotations

import subprocess
import sys

import make_models  # noqa: E402  (examples/ccfraud, put on sys.path by tests/conftest.py)
import numpy as np
import onnxruntime as ort
import pytest
from support.engine import ARROW_FILE, publish_spec, start_engine, tensor_table
from support.procs import free_port
from support.specs import one_step

from engine.providers import CPU, AcceleratorUnavailable, requested
from joey.pipeline_config import EngineConfig


@pytest.mark.parametrize("accel, available, expected", [
    ("none", ["CUDAExecutionProvider", CPU], [CPU]),
    ("cuda", ["CUDAExecutionProvider", CPU], ["CUDAExecutionProvider", CPU]),
    ("openvino", ["OpenVINOExecutionProvider", CPU], ["OpenVINOExecutionProvider", CPU]),
    ("cuda", ["OpenVINOExecutionProvider", CPU], [CPU]),
    ("jetson", [CPU], [CPU]),
])
def test_the_providers_asked_for(accel, available, expected):
    assert requested("p", EngineConfig(accel=accel), available) == expected


def test_a_demanded_accelerator_that_is_absent_is_refused():
    with pytest.raises(AcceleratorUnavailable, match="has no CUDAExecutionProvider"):
        requested("p", EngineConfig(accel="cuda", gpus=1), [CPU])
    with pytest.raises(AcceleratorUnavailable, match="no onnxruntime execution provider is known for accel 'jetson'"):
        requested("p", EngineConfig(accel="jetson", gpus=1), [CPU])
    assert requested("p", EngineConfig(accel="none", gpus=1), [CPU]) == [CPU]


def publish_with(tmp_path, registry, deployment: str) -> dict:
    make_models.write(tmp_path / "models")
    (tmp_path / "spec.yaml").write_text(one_step("accel-pipeline") + f"deployment: {deployment}\n")
    return publish_spec(tmp_path / "spec.yaml", registry)


def test_a_cuda_pipeline_falls_back_to_cpu_with_a_log_line(tmp_path, registry):
    assert "CUDAExecutionProvider" not in ort.get_available_providers()
    record = publish_with(tmp_path, registry, "{accel: cuda}")
    engine = start_engine(record["pipeline_url"], tmp_path / "persist")
    try:
        x = np.random.default_rng(3).normal(0, 1, (2, 29)).astype(np.float32)
        engine.infer(tensor_table(x), fmt=ARROW_FILE)
    finally:
        assert engine.stop() == 0
    log = engine.log_text()
    assert "asks for accel cuda, but this engine's onnxruntime has no CUDAExecutionProvider" in log
    assert "execution providers CPUExecutionProvider (accel cuda)" in log


def test_a_demanded_cuda_that_is_absent_stops_the_engine_in_one_line(tmp_path, registry):
    record = publish_with(tmp_path, registry, "{accel: cuda, gpus: 1}")
    env = {"PIPELINE_URL": record["pipeline_url"], "JOEY_PERSIST_DIR": str(tmp_path / "persist"),
           "JOEY_PLAIN_HTTP": "true"}
    proc = subprocess.run([sys.executable, "-m", "engine", "--host", "127.0.0.1", "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == AcceleratorUnavailable.exit_code, output
    errors = [line for line in output.splitlines() if "demands accel cuda" in line]
    assert len(errors) == 1, output
    assert "(deployment.gpus: 1), but this engine's onnxruntime has no CUDAExecutionProvider" in errors[0]
    assert "packager image build --accel cuda" in errors[0]
