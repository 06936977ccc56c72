"""CycloneDX SBOMs: the pipeline's (models by digest, opsets, producers) attached at publish, the engine
image's (its wheels, versions, licences) attached to the pushed image; both valid CycloneDX 1.6, both listed
by `packager inspect`."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile

import requests
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from joey import mediatypes
from packager.image import attach_image_sbom
from packager.publish import publish
from packager.sbom import engine_sbom

SPEC = "name: edge-pipeline\nsteps:\n  - name: ccfraud-logreg\n    model: models/ccfraud-logreg.onnx\n" \
       "    tensor_fields: [tensor]\n"


def inspect(ref: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "packager.cli", "inspect", ref, "--plain-http", "--json"],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def valid(document: bytes) -> dict:
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document.decode()) is None
    return json.loads(document)


def test_a_publish_attaches_the_pipelines_sbom(example_models, write_spec, registry):
    rec = publish(write_spec(SPEC), registry=f"{registry.host}/sbom", plain_http=True, with_chart=False)
    digest, repo = rec["pipeline_digest"], "sbom/pipelines/edge-pipeline"
    m = requests.get(f"{registry.url}/v2/{repo}/manifests/sha256-{digest[7:]}.sbom",
                     headers={"Accept": mediatypes.OCI_MANIFEST}).json()
    assert m["artifactType"] == "application/vnd.cyclonedx+json" and m["subject"]["digest"] == digest
    doc = valid(requests.get(f"{registry.url}/v2/{repo}/blobs/{m['layers'][0]['digest']}").content)
    assert doc["metadata"]["component"]["name"] == "edge-pipeline"
    assert doc["metadata"]["component"]["version"] == rec["pipeline_version"]
    [model] = doc["components"]
    sha = hashlib.sha256(example_models["ccfraud-logreg"].read_bytes()).hexdigest()
    assert model["type"] == "machine-learning-model" and model["name"] == "ccfraud-logreg"
    assert model["hashes"] == [{"alg": "SHA-256", "content": sha}]
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props["joey:opset:ai.onnx"].isdigit() and props["joey:producer"] and props["joey:framework"] == "onnx"

    shown = inspect(rec["pipeline_url"])
    assert "sbom" in {r["kind"] for r in shown["referrers"]}
    assert shown["sbom"]["components"] == [{"type": "machine-learning-model", "name": "ccfraud-logreg",
                                            "version": model["version"], "detail": f"sha256:{sha}"}]


def _wheel(path, name: str, version: str, licence_header: str) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA",
                   f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n{licence_header}\n")
        z.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")


def test_the_engine_images_sbom_lists_its_wheels_and_is_attached_to_the_pushed_image(
        example_models, write_spec, registry, tmp_path):
    deps, app = tmp_path / "deps", tmp_path / "app"
    deps.mkdir()
    app.mkdir()
    _wheel(deps / "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl", "numpy", "2.0.0",
           "License-Expression: BSD-3-Clause")
    _wheel(deps / "six-1.16.0-py2.py3-none-any.whl", "six", "1.16.0", "License: MIT")
    _wheel(deps / "uvloop-0.19.0-cp311-cp311-manylinux_2_17_x86_64.whl", "uvloop", "0.19.0",
           "Classifier: License :: OSI Approved :: Apache Software License")
    _wheel(app / "joey-0.1.0-py3-none-any.whl", "joey", "0.1.0", "License-Expression: Apache-2.0")
    document = engine_sbom([deps, app], "localhost/joey-engine:0.1.0", "2024-05-01T00:00:00Z")
    doc = valid(document)
    libraries = {c["name"]: c for c in doc["components"]}
    assert set(libraries) == {"numpy", "six", "uvloop", "joey"}
    assert libraries["numpy"]["purl"] == "pkg:pypi/numpy@2.0.0"
    assert libraries["numpy"]["licenses"] == [{"license": {"id": "BSD-3-Clause"}}]
    assert libraries["six"]["licenses"] == [{"license": {"id": "MIT"}}]
    assert libraries["uvloop"]["licenses"] == [{"license": {"name": "Apache Software License"}}]
    assert engine_sbom([deps, app], "localhost/joey-engine:0.1.0", "2024-05-01T00:00:00Z") == document

    # a registry publish puts the (placeholder) engine image in the registry: attach the SBOM to it there
    rec = publish(write_spec(SPEC), registry=f"{registry.host}/esbom", plain_http=True, with_chart=False)
    image = rec["engine_url"]
    repo_ref, _, digest = image.partition("@")
    attach_image_sbom(image, digest, document, plain_http=True)
    shown = inspect(image)
    assert "sbom" in {r["kind"] for r in shown["referrers"]}
    assert {c["name"]: c["detail"] for c in shown["sbom"]["components"]}["numpy"] == "BSD-3-Clause"
