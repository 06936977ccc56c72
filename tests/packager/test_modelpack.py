"""Each published model is also a CNCF ModelPack artifact that a ModelPack client pulls byte for byte, made of
the pipeline's own weight blob and named by digest from the pipeline config."""
from __future__ import annotations

import hashlib
import json

import requests
from modelpack_client import ModelPackClient

from joey import mediatypes
from joey.layout import OCILayout
from packager.publish import publish

SPEC = "name: edge-pipeline\nsteps:\n  - name: ccfraud-logreg\n    model: models/ccfraud-logreg.onnx\n" \
       "    tensor_fields: [tensor]\n"


def test_modelpack_client_pulls_a_published_model_byte_identical(example_models, write_spec, registry, tmp_path):
    rec = publish(write_spec(SPEC), registry=f"{registry.host}/mp", plain_http=True, with_chart=False)
    pipeline = requests.get(f"{registry.url}/v2/mp/pipelines/edge-pipeline/manifests/{rec['pipeline_version']}",
                            headers={"Accept": mediatypes.OCI_MANIFEST}).json()
    config = requests.get(f"{registry.url}/v2/mp/pipelines/edge-pipeline/blobs/"
                          f"{pipeline['config']['digest']}").json()
    [step] = config["steps"]

    ref = f"{registry.host}/mp/models/ccfraud-logreg:{step['model_version']}"
    pulled = ModelPackClient(insecure=True).pull(ref, tmp_path / "pulled")
    assert [p.name for p in pulled.files] == ["ccfraud-logreg.onnx"]
    assert pulled.files[0].read_bytes() == example_models["ccfraud-logreg"].read_bytes()
    assert pulled.manifest["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert pulled.config["descriptor"] == {"name": "ccfraud-logreg", "version": step["model_version"]}
    assert pulled.config["modelfs"] == {"type": "layers", "diffIds": [f"sha256:{step['sha256']}"]}

    # the pipeline config names the model artifact by digest, and both share one weight blob, sent once
    r = requests.get(f"{registry.url}/v2/mp/models/ccfraud-logreg/manifests/{step['model_version']}",
                     headers={"Accept": mediatypes.OCI_MANIFEST})
    assert r.headers["Docker-Content-Digest"] == step["modelpack_digest"]
    assert json.loads(r.content)["layers"][0]["digest"] == pipeline["layers"][0]["digest"]
    assert registry.requests_seen("PUT", "/v2/mp/models/ccfraud-logreg/blobs/uploads") == 1   # the config only


def test_the_local_store_holds_the_models_too(example_models, write_spec, tmp_path):
    publish(write_spec(SPEC), with_chart=False)
    layout = OCILayout(tmp_path / "store")
    [name] = [n for n in layout.ref_names() if n.startswith("models/")]
    repo, _, version = name.partition(":")
    manifest = json.loads(layout.resolve(repo, version)[0])
    assert repo == "models/ccfraud-logreg" and manifest["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    model = example_models["ccfraud-logreg"].read_bytes()
    assert manifest["layers"][0]["digest"] == "sha256:" + hashlib.sha256(model).hexdigest()
