"""Publishing to and pulling from a REAL registry (Debian's docker-registry on loopback)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
import requests

from joey.errors import DigestMismatch, RegistryError, SizeMismatch
from joey.names import parse
from joey.registry import Registry
from joey.transfer import pull_to_dir
from packager.publish import publish

ONE = "name: edge-pipeline\nsteps:\n  - name: ccfraud-mlp\n    model: models/ccfraud-mlp.onnx\n"


def _publish(spec, reg, **kw):
    return publish(spec, registry=f"{reg.host}/demo", plain_http=True, with_chart=False,
                   username=reg.username, password=reg.password, **kw)


def test_publish_then_pull_is_byte_identical(example_models, write_spec, registry, tmp_path):
    rec = _publish(write_spec(ONE), registry)
    assert rec["status"] == "Published"
    assert rec["pipeline_url"] == f"{registry.host}/demo/pipelines/edge-pipeline:{rec['pipeline_version']}"
    assert rec["docker_run_variables"] == {"PIPELINE_URL": rec["pipeline_url"], "JOEY_PLAIN_HTTP": "true"}
    ref = parse(rec["pipeline_url"])
    pulled = pull_to_dir(Registry(registry.host, plain_http=True), ref.repository, ref.tag, tmp_path / "out")
    assert pulled.manifest.digest == rec["pipeline_digest"]
    assert (tmp_path / "out" / "ccfraud-mlp.onnx").read_bytes() == example_models["ccfraud-mlp"].read_bytes()
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["version"] == rec["pipeline_version"]


def test_republishing_unchanged_uploads_no_blob(example_models, write_spec, fresh_registry):
    spec = write_spec(ONE)
    first = _publish(spec, fresh_registry)
    posts, puts = fresh_registry.requests_seen("POST"), fresh_registry.requests_seen("PUT", "/blobs/")
    mounts = fresh_registry.requests_seen("POST", "mount=")   # the ModelPack models' weights: linked, not sent
    assert mounts == 1 and posts >= 2 and puts == posts - mounts  # config + model (+ record blobs): POST + PUT
    again = _publish(spec, fresh_registry)
    assert again["pipeline_digest"] == first["pipeline_digest"]
    assert fresh_registry.requests_seen("POST") == posts
    assert fresh_registry.requests_seen("PUT", "/blobs/") == puts


def test_wrong_credentials_give_a_clear_error(example_models, write_spec, auth_registry):
    spec = write_spec(ONE)
    with pytest.raises(RegistryError) as e:
        publish(spec, registry=f"{auth_registry.host}/demo", plain_http=True, with_chart=False,
                username="joey", password="wrong")
    assert e.value.status == 401 and "OCI_USERNAME/OCI_PASSWORD" in e.value.one_line()
    ok = publish(spec, registry=f"{auth_registry.host}/demo", plain_http=True, with_chart=False,
                 username="joey", password="s3cret!")
    assert ok["status"] == "Published"


def test_cli_wrong_credentials_one_line_and_exit_code(example_models, write_spec, auth_registry):
    env_extra = {"OCI_USERNAME": "joey", "OCI_PASSWORD": "nope"}
    out = _cli(["publish", str(write_spec(ONE)), "--registry", f"{auth_registry.host}/demo", "--plain-http",
                "--no-chart", "--json"], env_extra)
    assert out.returncode == 4
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "registry said 401" in lines[0] and "check OCI_USERNAME/OCI_PASSWORD" in lines[0]
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_blob_fails_pull_and_leaves_nothing(example_models, write_spec, fresh_registry, tmp_path, damage):
    rec = _publish(write_spec(ONE), fresh_registry)
    layer = _layer_digest(fresh_registry, rec)
    blob = fresh_registry.blob_file(layer)
    data = bytearray(blob.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[:-10]
    blob.write_bytes(bytes(data))
    ref = parse(rec["pipeline_url"])
    out = tmp_path / "out"
    with pytest.raises(DigestMismatch if damage == "flip" else SizeMismatch):
        pull_to_dir(Registry(fresh_registry.host, plain_http=True), ref.repository, ref.tag, out)
    assert not out.exists() or list(out.iterdir()) == []


def test_cli_pull_digest_error_exit_code(example_models, write_spec, fresh_registry, tmp_path):
    rec = _publish(write_spec(ONE), fresh_registry)
    blob = fresh_registry.blob_file(_layer_digest(fresh_registry, rec))
    data = bytearray(blob.read_bytes())
    data[5] ^= 0xFF
    blob.write_bytes(bytes(data))
    out = _cli(["pull", rec["pipeline_url"], "--out", str(tmp_path / "o"), "--plain-http"])
    assert out.returncode == 5 and "digest mismatch" in out.stderr
    assert list((tmp_path / "o").glob("**/*")) == [] if (tmp_path / "o").exists() else True


def test_push_from_the_store_then_inspect(example_models, write_spec, registry):
    spec = write_spec(ONE)
    built = json.loads(_cli(["build", str(spec), "--json"]).stdout)
    pushed = json.loads(_cli(["push", f"edge-pipeline:{built['pipeline_version']}", "--registry",
                              f"{registry.host}/pushed", "--plain-http", "--json"]).stdout)
    assert pushed["digest"] == built["digest"]
    info = json.loads(_cli(["inspect", pushed["reference"], "--plain-http", "--json"]).stdout)
    assert info["digest"] == built["digest"]
    assert info["pipeline"]["steps"][0]["inputs"][0] == {"name": "dense_input", "type": "float32",
                                                         "shape": ["batch", 29]}


def _layer_digest(reg, rec) -> str:
    ref = parse(rec["pipeline_url"])
    raw, _, _ = Registry(reg.host, plain_http=True).resolve(ref.repository, ref.tag)
    return json.loads(raw)["layers"][0]["digest"]


def _cli(args, env_extra=None):
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], capture_output=True, text=True, env=env)


def test_credentials_from_the_docker_config_file(example_models, write_spec, auth_registry, tmp_path):
    import base64
    import os

    config_dir = tmp_path / "docker-config"
    config_dir.mkdir(exist_ok=True)
    auth = base64.b64encode(b"joey:s3cret!").decode()
    (config_dir / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": auth}}}))
    assert os.environ["DOCKER_CONFIG"] == str(config_dir)
    rec = publish(write_spec(ONE), registry=f"{auth_registry.host}/dockercfg", plain_http=True, with_chart=False)
    assert rec["status"] == "Published"


def _big_model(path, valid: bool = True) -> None:
    """A 9 MiB model: large enough that publish sends it while onnx still checks it."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((9 * 2**20 // 4 // 64, 64), dtype=np.float32), "W")
    op = "Identity" if valid else "NoSuchOp"
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "big",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


BIG = "name: big\nsteps:\n  - name: big\n    model: models/big.onnx\n"


def test_large_model_uploaded_while_checked(write_spec, fresh_registry, tmp_path):
    (tmp_path / "models").mkdir()
    _big_model(tmp_path / "models" / "big.onnx")
    rec = _publish(write_spec(BIG), fresh_registry)
    ref = parse(rec["pipeline_url"])
    pull_to_dir(Registry(fresh_registry.host, plain_http=True), ref.repository, ref.tag, tmp_path / "out")
    assert (tmp_path / "out" / "big.onnx").read_bytes() == (tmp_path / "models" / "big.onnx").read_bytes()


def test_large_model_that_fails_the_checker_leaves_no_manifest(write_spec, fresh_registry, tmp_path):
    from joey.errors import SpecError

    (tmp_path / "models").mkdir()
    _big_model(tmp_path / "models" / "big.onnx", valid=False)
    threads = threading.active_count()
    with pytest.raises(SpecError, match="not a valid ONNX model"):
        _publish(write_spec(BIG), fresh_registry)
    assert threading.active_count() == threads, "an upload outlived the failed publish"
    assert fresh_registry.requests_seen("PUT", "/manifests/") == 0
    tags = requests.get(f"http://{fresh_registry.host}/v2/demo/pipelines/big/tags/list")
    assert tags.status_code == 404 or not tags.json().get("tags")
