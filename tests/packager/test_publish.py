"""Publishes: record, chart pushed with real Helm, commands, replaces, the embedded default."""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import tarfile

import helm_python
import pytest
import requests
import yaml

from joey import __version__, mediatypes
from joey.names import parse
from joey.registry import Registry
from joey.transfer import open_target
from packager.engine_image import EngineImageMissing
from packager.publish import publish, publishes

ONE = "name: edge-pipeline\nworkspace: demo\nsteps:\n  - name: ccfraud-logreg\n" \
      "    model: models/ccfraud-logreg.onnx\n    tensor_fields: [tensor]\ndeployment: {cpus: 1.5, memory: 900Mi}\n"
RECORD_KEYS = {"id", "pipeline_name", "pipeline_version", "status", "workspace_name", "engine_url", "pipeline_url",
               "pipeline_digest", "helm", "engine_config", "docker_run_variables", "user_images", "created_by",
               "created_at", "updated_at", "replaces", "error", "commands"}


def test_record_has_the_seeds_fields_and_the_chart_is_real(example_models, write_spec, registry, tmp_path):
    rec = publish(write_spec(ONE), registry=f"{registry.host}/pub", plain_http=True)
    assert set(rec) == RECORD_KEYS
    v = rec["pipeline_version"]
    helm = rec["helm"]
    assert helm["chart"] == f"oci://{registry.host}/pub/charts/edge-pipeline"
    assert helm["version"] == f"0.0.1-{v}"
    assert helm["values"]["pipelineUrl"] == rec["pipeline_url"]
    assert helm["values"]["engine"]["cpus"] == 1.5
    # helm.reference resolves to the chart's manifest digest in the registry
    r = requests.get(f"http://{registry.host}/v2/pub/charts/edge-pipeline/manifests/{helm['version']}",
                     headers={"Accept": mediatypes.OCI_MANIFEST})
    digest = "sha256:" + hashlib.sha256(r.content).hexdigest()
    assert helm["reference"] == f"{registry.host}/pub/charts@{digest}"
    manifest = r.json()
    assert manifest["config"]["mediaType"] == mediatypes.HELM_CONFIG
    assert manifest["layers"][0]["mediaType"] == mediatypes.HELM_CHART_CONTENT
    # pulling helm.chart at helm.version with real Helm gives this publish's chart
    dest = tmp_path / "pulled"
    dest.mkdir()
    with helm_python.RegistryClient(plain_http=True) as client:
        client.pull(helm["chart"], version=helm["version"], destination=dest)
    tgz = next(dest.glob("*.tgz"))
    with tarfile.open(tgz) as t:
        chart = yaml.safe_load(t.extractfile("edge-pipeline/Chart.yaml"))
        values = yaml.safe_load(t.extractfile("edge-pipeline/values.yaml"))
    assert chart["name"] == "edge-pipeline" and chart["version"] == helm["version"]
    assert values["pipelineUrl"] == rec["pipeline_url"]
    # the commands
    cmd = rec["commands"]
    assert cmd["docker_run"].startswith("docker run \\\n    --network host \\\n")   # a registry on loopback
    assert f"-e PIPELINE_URL={rec['pipeline_url']}" in cmd["docker_run"]
    assert "-e CONFIG_CPUS=1.5 --cpus=1.5 --memory=900m" in cmd["docker_run"]
    assert "EDGE_BUNDLE" not in cmd["docker_run"] and "/persist" not in cmd["docker_run"]
    assert cmd["podman_run"].startswith("podman run")
    assert cmd["helm_install"].startswith(f"helm install --atomic $HELM_INSTALL_NAME {helm['chart']}")
    assert f"--version {helm['version']}" in cmd["helm_install"]
    assert yaml.safe_load(cmd["compose"])["services"]["engine"]["environment"]["PIPELINE_URL"] == rec["pipeline_url"]
    # the registry holds the record: publishes lists it without any Ops center
    listed = publishes("edge-pipeline", registry=f"{registry.host}/pub", plain_http=True)
    assert [p["pipeline_digest"] for p in listed] == [rec["pipeline_digest"]]


def test_replacing_a_publish_gives_upgrade_commands(example_models, write_spec, registry):
    first = publish(write_spec(ONE), registry=f"{registry.host}/rep", plain_http=True)
    spec2 = write_spec(ONE.replace("ccfraud-logreg", "ccfraud-mlp").replace("[tensor]", "[tensor]"), "v2.yaml")
    second = publish(spec2, registry=f"{registry.host}/rep", plain_http=True,
                     replaces=[f"edge-pipeline:{first['pipeline_version']}"])
    assert second["pipeline_version"] != first["pipeline_version"]
    assert second["replaces"][0]["pipeline_version"] == first["pipeline_version"]
    assert second["replaces"][0]["helm_version"] == first["helm"]["version"]
    assert second["commands"]["helm_install"].startswith("helm upgrade --atomic $HELM_INSTALL_NAME")
    assert "--create-namespace" not in second["commands"]["helm_install"]
    assert len(publishes("edge-pipeline", registry=f"{registry.host}/rep", plain_http=True)) == 2


def test_embedded_default_publish_prints_the_record(example_models, write_spec, tmp_path):
    out = subprocess.run([sys.executable, "-m", "packager.cli", "publish", str(write_spec(ONE))],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "pipeline_url" in out.stdout and "oci:" in out.stdout and "packager serve oci:" in out.stdout
    js = subprocess.run([sys.executable, "-m", "packager.cli", "publishes", "--json"], capture_output=True,
                        text=True, check=True)
    recs = json.loads(js.stdout)["publishes"]
    assert len(recs) == 1 and recs[0]["helm"]["version"].startswith("0.0.1-")
    # the chart is in the layout with Helm's media types
    store = tmp_path / "store"
    index = json.loads((store / "index.json").read_text())
    names = {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]}
    assert f"charts/edge-pipeline:{recs[0]['helm']['version']}" in names


def test_shell_special_values_are_quoted(example_models, write_spec, registry, monkeypatch):
    monkeypatch.setenv("JOEY_ENGINE_IMAGE", "127.0.0.1:1/engines/joey engine;rm -rf:1")
    rec = publish(write_spec(ONE), registry=f"{registry.host}/q", plain_http=True, with_chart=False,
                  with_engine_image=False)
    line = rec["commands"]["docker_run"].splitlines()[-1].strip()
    assert shlex.split(line) == ["127.0.0.1:1/engines/joey engine;rm -rf:1", "--port", "$EDGE_PORT"]


def _skopeo_digest(ref: str, *, raw: bool = False) -> str:
    """The manifest digest skopeo finds at `ref`; `raw` for an artifact that is not an image (a Helm chart)."""
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *(["--raw"] if raw else []), f"docker://{ref}"],
                         capture_output=True)
    assert out.returncode == 0, out.stderr
    return "sha256:" + hashlib.sha256(out.stdout).hexdigest() if raw else json.loads(out.stdout)["Digest"]


def test_publish_copies_the_engine_image_and_pins_it(example_models, write_spec, registry):
    source = parse(os.environ["JOEY_ENGINE_IMAGE_SOURCE"])
    source_digest = open_target(source).resolve(source.repository, source.reference)[2]
    rec = publish(write_spec(ONE), registry=f"{registry.host}/engcopy", plain_http=True)
    named = f"{registry.host}/engcopy/engines/joey-engine:{__version__}"
    assert rec["engine_url"] == f"{registry.host}/engcopy/engines/joey-engine@{source_digest}"
    assert "engine_image" not in rec
    # a standard tool finds the engine image and the chart the record names, with the source's digest
    assert _skopeo_digest(named) == source_digest
    assert _skopeo_digest(rec["helm"]["reference"], raw=True) == rec["helm"]["reference"].split("@", 1)[1]
    assert rec["helm"]["values"]["image"]["digest"] == source_digest
    assert rec["commands"]["docker_run"].splitlines()[-1].split()[0] == rec["engine_url"]


def test_publish_uses_the_engine_image_already_in_the_registry(example_models, write_spec, registry,
                                                               monkeypatch):
    first = publish(write_spec(ONE), registry=f"{registry.host}/engthere", plain_http=True)
    monkeypatch.setenv("JOEY_ENGINE_IMAGE_SOURCE", "oci:/nonexistent:engines/joey-engine:0")
    spec2 = write_spec(ONE.replace("ccfraud-logreg", "ccfraud-mlp"), "v2.yaml")
    second = publish(spec2, registry=f"{registry.host}/engthere", plain_http=True)
    assert second["engine_url"] == first["engine_url"]


@pytest.fixture()
def own_podman_store(tmp_path, monkeypatch):
    """podman with an image store of this test's own, and no image source configured."""
    monkeypatch.delenv("JOEY_ENGINE_IMAGE_SOURCE")
    storage = tmp_path / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path}/graph"\nrunroot = "{tmp_path}/run"\n')
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(storage))


def test_publish_pushes_the_image_packager_image_build_left(example_models, write_spec, registry, tmp_path,
                                                            own_podman_store):
    from packager.image import DEFAULT_TAG, podman

    layer = tmp_path / "rootfs.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add(example_models["ccfraud-logreg"], arcname="placeholder")
    podman("test image", "import", "--quiet", str(layer), DEFAULT_TAG)
    rec = publish(write_spec(ONE), registry=f"{registry.host}/engpodman", plain_http=True)
    named = f"{registry.host}/engpodman/engines/joey-engine:{__version__}"
    assert rec["engine_url"] == f"{registry.host}/engpodman/engines/joey-engine@{_skopeo_digest(named)}"


def test_publish_without_an_engine_image_stops_before_pushing(example_models, write_spec, registry,
                                                              own_podman_store):
    with pytest.raises(EngineImageMissing) as e:
        publish(write_spec(ONE), registry=f"{registry.host}/engnone", plain_http=True)
    assert f"{registry.host}/engnone/engines/joey-engine:{__version__}" in str(e.value)
    assert "packager image build" in e.value.hint and "--engine-image" in e.value.hint
    assert Registry(registry.host, plain_http=True).tags("engnone/pipelines/edge-pipeline") == []
    out = subprocess.run([sys.executable, "-m", "packager.cli", "publish", str(write_spec(ONE)), "--registry",
                          f"{registry.host}/engnone", "--plain-http", "--engine-image", "oci:/nonexistent:x:1"],
                         capture_output=True, text=True)
    assert out.returncode == EngineImageMissing.exit_code, out.stderr
    assert "packager image build" in out.stderr and "nothing was pushed" in out.stderr
    assert Registry(registry.host, plain_http=True).tags("engnone/pipelines/edge-pipeline") == []


def test_no_engine_image_publishes_without_it_and_says_so(example_models, write_spec, registry, monkeypatch):
    monkeypatch.delenv("JOEY_ENGINE_IMAGE_SOURCE")
    out = subprocess.run([sys.executable, "-m", "packager.cli", "publish", str(write_spec(ONE)), "--registry",
                          f"{registry.host}/engopt", "--plain-http", "--no-engine-image"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "engine image not published (--no-engine-image)" in out.stdout
    (rec,) = publishes("edge-pipeline", registry=f"{registry.host}/engopt", plain_http=True)
    assert rec["engine_image"] == "not published"
    assert rec["engine_url"] == f"{registry.host}/engopt/engines/joey-engine:{__version__}"
    assert Registry(registry.host, plain_http=True).tags("engopt/engines/joey-engine") == []
