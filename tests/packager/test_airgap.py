"""Air-gapped export/import: one OCI-layout tarball, restored into another registry with identical digests."""
from __future__ import annotations

import io
import subprocess
import tarfile

import pytest
import requests

from joey.errors import JoeyError
from packager.airgap import export_publish, import_bundle
from packager.publish import publish

ONE = "name: edge-pipeline\nsteps:\n  - name: ccfraud-logreg\n    model: models/ccfraud-logreg.onnx\n" \
      "    tensor_fields: [tensor]\n"


def test_export_then_import_keeps_digests(example_models, write_spec, registry, fresh_registry, tmp_path):
    rec = publish(write_spec(ONE), registry=f"{registry.host}/src", plain_http=True, with_engine_image=False)
    out = tmp_path / "bundle.tar"
    ex = export_publish(rec["pipeline_url"], out, plain_http=True)
    v = rec["pipeline_version"]
    assert ex.refs[f"pipelines/edge-pipeline:{v}"] == rec["pipeline_digest"]
    assert ex.refs[f"charts/edge-pipeline:0.0.1-{v}"] == rec["helm"]["reference"].split("@", 1)[1]
    assert rec["engine_url"] in ex.skipped  # no engine image was pushed to this registry
    with tarfile.open(out) as t:
        assert "oci-layout" in t.getnames() and "index.json" in t.getnames()
    # a standard tool reads the layout inside
    (tmp_path / "x").mkdir()
    with tarfile.open(out) as t:
        t.extractall(tmp_path / "x", filter="data")
    subprocess.run(["skopeo", "inspect", "--raw", f"oci:{tmp_path / 'x'}:pipelines/edge-pipeline:{v}"],
                   check=True, capture_output=True)

    refs = import_bundle(out, f"{fresh_registry.host}/dst", plain_http=True)
    assert refs[f"{fresh_registry.host}/dst/pipelines/edge-pipeline:{v}"] == rec["pipeline_digest"]
    for ref, digest in refs.items():
        repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
        r = requests.get(f"http://{fresh_registry.host}/v2/{repo}/manifests/{tag}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.headers["Docker-Content-Digest"] == digest


def test_import_refuses_unsafe_members(tmp_path, fresh_registry):
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as t:
        info = tarfile.TarInfo("../escape")
        data = b"x"
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    with pytest.raises((JoeyError, tarfile.TarError)):
        import_bundle(bad, f"{fresh_registry.host}/dst", plain_http=True)
    assert not (tmp_path / "escape").exists()
