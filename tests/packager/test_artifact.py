"""The artifact's shape, reproducibility and the local OCI layout (read by skopeo, a standard tool)."""
from __future__ import annotations

import json
import subprocess

import pytest

from joey import annotations as ann
from joey import mediatypes
from joey.layout import OCILayout
from packager.build import build
from packager.onnxmodel import sha256_file

SPEC = """\
name: edge-pipeline
steps:
  - name: ccfraud-logreg
    model: models/ccfraud-logreg.onnx
    tensor_fields: [tensor]
  - name: identity
    model: models/identity.onnx
"""


@pytest.fixture()
def spec(example_models, write_spec, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["variable"], ["score"])], "id",
                          [helper.make_tensor_value_info("variable", TensorProto.FLOAT, ["batch", 1])],
                          [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, tmp_path / "models" / "identity.onnx")
    return write_spec(SPEC)


def test_manifest_config_and_layers(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    b = build(spec, source="https://example.test/repo", revision="abc123")
    m = json.loads(b.artifact.manifest)
    assert m["mediaType"] == mediatypes.OCI_MANIFEST
    assert m["artifactType"] == mediatypes.PIPELINE_ARTIFACT
    assert m["config"]["mediaType"] == mediatypes.PIPELINE_CONFIG
    assert m["annotations"] == {
        ann.CREATED: "2023-11-14T22:13:20Z", ann.VERSION: b.artifact.config.version, ann.TITLE: "edge-pipeline",
        ann.SOURCE: "https://example.test/repo", ann.REVISION: "abc123"}
    assert [layer["mediaType"] for layer in m["layers"]] == [mediatypes.MODEL_WEIGHT_RAW] * 2
    for layer, name in zip(m["layers"], ("ccfraud-logreg", "identity")):
        sha, size = sha256_file(tmp_path / "models" / f"{name}.onnx")
        assert layer["digest"] == f"sha256:{sha}" and layer["size"] == size
        assert layer["annotations"][ann.TITLE] == f"{name}.onnx"
        assert layer["annotations"][ann.MODEL_FILEPATH] == f"models/{name}.onnx"
        assert layer["annotations"][ann.MODEL_NAME] == name
    config = json.loads(b.artifact.config_bytes)
    assert config["engine_config"]["engine"]["resources"]["limits"] == {"cpu": 1.0, "memory": "1Gi"}
    assert [s["name"] for s in config["steps"]] == ["ccfraud-logreg", "identity"]
    assert config["version"] == b.artifact.config.version


def test_two_builds_give_the_same_manifest_digest(spec, tmp_path, monkeypatch):
    first = build(spec, store=tmp_path / "a")
    second = build(spec, store=tmp_path / "b")
    assert first.digest == second.digest
    assert (tmp_path / "a" / "index.json").read_bytes() == (tmp_path / "b" / "index.json").read_bytes()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")
    assert build(spec, store=tmp_path / "c").digest != first.digest  # created is part of the manifest


def test_rebuild_writes_no_blob(spec, tmp_path):
    first = build(spec)
    again = build(spec)
    assert len(first.copy.uploaded) == 3 and again.copy.uploaded == []


def test_skopeo_reads_the_layout(spec, tmp_path):
    b = build(spec, store=tmp_path / "store")
    out = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{tmp_path / 'store'}:pipelines/edge-pipeline:"
                          f"{b.artifact.config.version}"], capture_output=True, text=True, check=True)
    assert out.stdout.encode() == b.artifact.manifest
    layout = OCILayout(tmp_path / "store")
    assert json.loads((layout.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    # skopeo copies the artifact out to another layout with every blob intact
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{tmp_path / 'store'}:pipelines/edge-pipeline:"
                    f"{b.artifact.config.version}", f"oci:{tmp_path / 'copy'}:x"], check=True, capture_output=True)
    copied = json.loads((tmp_path / "copy" / "index.json").read_text())["manifests"][0]["digest"]
    assert copied == b.digest
