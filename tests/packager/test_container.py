"""The engine image: built with podman from engine/Dockerfile, pushed to a real registry, and run the way the
publish's docker-run command says, against a pipeline published to that registry.

The image is the session's `engine_image` (tests/conftest.py): built once a run by the installed wheel's
`packager image build`, shared with tests/packager/test_user_journey.py. The base image and the wheelhouse are
cached under ~/.cache/joey across runs (see packager/image.py), so after the first run the build only redoes the
project's layer.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest
import requests
from support.procs import free_port, start, wait_http

from joey import __version__
from packager.image import BASE_IMAGE, podman_env, push_engine_image
from packager.publish import publish

pytestmark = pytest.mark.container

ENGINE_UID = 10001
SPEC = """\
name: edge-pipeline
workspace: container-test
steps:
  - name: ccfraud-logreg
    model: models/ccfraud-logreg.onnx
    tensor_fields: [tensor]
deployment: {cpus: 1, memory: 900Mi}
validations:
  high_fraud: out.variable > 0.95
"""
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=podman_env(), check=check)


def in_image(image: str, code: str) -> subprocess.CompletedProcess:
    """Run Python code in a throwaway container of the image (the venv's interpreter, as the engine user)."""
    return podman("--runtime", "runc", "run", "--rm", "--ulimit", "host", "--network", "none",
                  "--entrypoint", "python", image, "-c", code, check=False)


@pytest.fixture(autouse=True)
def _docker_config():
    """podman reads $DOCKER_CONFIG (conftest points it at a fresh directory) and fails when it has no config.json."""
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('{"auths": {}}')


def test_image_runs_the_engine_as_uid_10001_with_a_persist_volume(engine_image):
    (info,) = json.loads(podman("image", "inspect", engine_image).stdout)
    cfg = info["Config"]
    assert cfg["User"] == f"{ENGINE_UID}:{ENGINE_UID}"
    assert "/persist" in cfg["Volumes"] and "8080/tcp" in cfg["ExposedPorts"]
    assert cfg["Entrypoint"] == ["/opt/joey/bin/joey-engine"]
    assert "/health" in " ".join(info["Healthcheck"]["Test"])
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.title"] == "joey-engine"
    assert labels["org.opencontainers.image.base.name"] == BASE_IMAGE

    probe = in_image(engine_image, "import importlib.util as u, os, engine.server; "
                                   "print(os.getuid(), os.stat('/persist').st_uid, "
                                   "[m for m in ('helm_python', 'pulumi', 'pytest', 'pip', 'jinja2') if u.find_spec(m)])")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().split(maxsplit=2) == [str(ENGINE_UID), str(ENGINE_UID), "[]"]


def test_engine_without_pipeline_url_exits_with_a_one_line_error(engine_image):
    out = podman("--runtime", "runc", "run", "--rm", "--ulimit", "host", "--network", "none", engine_image,
                 check=False)
    assert out.returncode == 2
    assert "PIPELINE_URL" in out.stderr and "Traceback" not in out.stderr


def _docker_run_args(command: str, variables: dict[str, str]) -> list[str]:
    """The arguments after `docker run` in a publish's command, with its $VARIABLES filled in."""
    argv = shlex.split(command.replace("\\\n", " "))  # a shell drops backslash-newline; shlex does not
    assert argv[:2] == ["docker", "run"], command
    filled = []
    for arg in argv[2:]:
        for name, value in variables.items():
            arg = arg.replace(f"${name}", value)
        filled.append(arg)
    return filled


@pytest.fixture()
def persist_dir(tmp_path):
    """The host directory bind-mounted at /persist: like a DevOps engineer would, hand it to the engine's uid."""
    path = tmp_path / "persist"
    path.mkdir()
    os.chown(path, ENGINE_UID, ENGINE_UID)
    return path


def test_published_pipeline_serves_from_the_pushed_image(engine_image, auth_registry, example_models, write_spec,
                                                          persist_dir, tmp_path):
    reg = auth_registry
    creds = f"{reg.username}:{reg.password}"
    engine_ref = f"{reg.host}/joey/engines/joey-engine:{__version__}"
    digest = push_engine_image(engine_image, engine_ref, creds=creds)
    stored = requests.get(f"{reg.url}/v2/joey/engines/joey-engine/manifests/{__version__}",
                          auth=(reg.username, reg.password), headers={"Accept": DOCKER_MANIFEST}, timeout=10)
    assert stored.status_code == 200 and stored.headers["Docker-Content-Digest"] == digest

    record = publish(write_spec(SPEC), registry=f"{reg.host}/joey", plain_http=True, username=reg.username,
                     password=reg.password, with_chart=False)
    assert record["engine_url"] == f"{reg.host}/joey/engines/joey-engine@{digest}"   # pinned by digest

    port = free_port()
    args = _docker_run_args(record["commands"]["docker_run"], {
        "EDGE_PORT": str(port), "OCI_USERNAME": reg.username, "OCI_PASSWORD": reg.password})
    at = args.index(record["engine_url"])
    flags, image, engine_args = args[:at], args[at], args[at + 1:]
    # The registry is on the host's loopback: the command shares the host's network, the engine on EDGE_PORT.
    assert flags[:2] == ["--network", "host"] and engine_args == ["--port", str(port)]
    name = f"joey-engine-test-{uuid.uuid4().hex[:12]}"
    # What this host needs on top of the publish's flags (docs/container.md): runc with the host's rlimits; the
    # test registry is plain HTTP.
    cmd = ["podman", "--runtime", "runc", "run", "--rm", "--name", name, "--ulimit", "host",
           *flags, "-v", f"{persist_dir}:/persist", "-e", "JOEY_PLAIN_HTTP=1", image, *engine_args]
    podman("pull", "--quiet", "--tls-verify=false", "--creds", creds, engine_ref)
    try:
        (pulled,) = json.loads(podman("image", "inspect", engine_ref).stdout)
        assert f"{reg.host}/joey/engines/joey-engine@{digest}" in pulled["RepoDigests"]

        with running(cmd, name, port, tmp_path / "engine.log"):
            rows = np.random.default_rng(3).normal(0, 1, size=(5, 29)).astype(np.float32)
            sink = pa.BufferOutputStream()
            table = pa.table({"tensor": pa.array(rows.tolist(), type=pa.list_(pa.float32()))})
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            answer = requests.post(f"http://127.0.0.1:{port}/infer", data=sink.getvalue().to_pybytes(),
                                   headers={"Content-Type": "application/vnd.apache.arrow.file"}, timeout=60)
            assert answer.status_code == 200, answer.text
            expected = ort.InferenceSession(str(example_models["ccfraud-logreg"])).run(None, {"tensor": rows})[0]
            records = answer.json()
            assert len(records) == 5
            got = np.array([r["out"]["variable"] for r in records], dtype=np.float32)
            np.testing.assert_allclose(got, expected, rtol=1e-6)
            assert [r["anomaly"]["high_fraud"] for r in records] == [bool(v > 0.95) for v in expected[:, 0]]

        model = example_models["ccfraud-logreg"].read_bytes()
        assert any(p.read_bytes() == model for p in (persist_dir / "pipelines").rglob("*.onnx"))
        assert ".cache" not in {p.name for p in persist_dir.iterdir()}  # HOME is not the volume
        assert {p.stat().st_uid for p in persist_dir.rglob("*")} == {ENGINE_UID}

        # A new container on the same volume still has the inference log of the first one.
        with running(cmd, name, port, tmp_path / "engine-again.log"):
            logged = requests.post(f"http://127.0.0.1:{port}/logs", timeout=30)
            assert logged.status_code == 200, logged.text
            assert [r["out"]["variable"] for r in logged.json()] == [r["out"]["variable"] for r in records]
    finally:
        podman("rmi", "--ignore", engine_ref, check=False)


@contextmanager
def running(cmd: list[str], name: str, port: int, log: Path) -> Iterator[None]:
    """The engine container in the foreground, ready; on the way out stopped and required to exit cleanly."""
    proc = start(cmd, log, env=podman_env())
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=180, ok=(200,), proc=proc, log=log)
        yield
        podman("stop", "--time", "20", name)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        podman("rm", "--force", "--ignore", name, check=False)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
