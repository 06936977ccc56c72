"""Conformance against the seeds' real models (../shared/reference): digests equal the seeds' model sha."""
from __future__ import annotations

import pytest

from joey.names import parse
from joey.registry import Registry
from joey.transfer import pull_to_dir
from packager.publish import publish

pytestmark = pytest.mark.reference
XGB_SHA = "054810e3e3ebbdd34438d9c1a08ed6a6680ef10bf97b9223f78ebf38e14b3b52"


def test_ccfraud_xgboost_layer_digest_is_the_seeds_sha(reference_dir, registry, write_spec, tmp_path):
    model = reference_dir / "models" / "ccfraud-xgboost.onnx"
    spec = write_spec(f"name: edge-pipeline\nsteps:\n  - name: ccfraud-xgboost\n    model: {model}\n"
                      "    tensor_fields: [tensor]\ndeployment: {cpus: 1, memory: 900Mi}\n")
    first = publish(spec, registry=f"{registry.host}/conformance", plain_http=True, with_chart=False)
    again = publish(spec, registry=f"{registry.host}/conformance", plain_http=True, with_chart=False)
    assert again["pipeline_digest"] == first["pipeline_digest"]
    ref = parse(first["pipeline_url"])
    pulled = pull_to_dir(Registry(registry.host, plain_http=True), ref.repository, ref.tag, tmp_path / "out")
    assert [layer.digest for layer in pulled.manifest.layers] == [f"sha256:{XGB_SHA}"]
    assert (tmp_path / "out" / "ccfraud-xgboost.onnx").read_bytes() == model.read_bytes()
