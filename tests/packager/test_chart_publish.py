"""A publish's chart: built, linted and packaged by real Helm, pushed to a real registry, pulled back by Helm."""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile

import helm_python as helm
import pytest
import requests
import yaml
from support.procs import free_port

from joey import envvars, mediatypes
from joey.errors import ConfigError, RegistryError, RegistryUnreachable
from packager import chart
from packager.chart import ChartError, build_publish_chart, push_chart, render

VERSION = "3b1c0d2e-5f1a-5b8e-9c4d-0a1b2c3d4e5f"
CHART_VERSION = f"0.0.1-{VERSION}"
PUBLISH_VALUES = {
    "pipelineUrl": f"registry.example.com/joey/pipelines/edge-pipeline:{VERSION}",
    "image": {"repository": "registry.example.com/joey/engines/joey-engine", "tag": "0.1.0",
              "digest": "sha256:" + "c0" * 32},
    "engine": {"cpus": 0.5, "memory": "900Mi", "gpus": 0, "arch": "arm", "accel": "none"},
    "ociRegistry": {"registry": "registry.example.com"},
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def members(tgz) -> dict[str, bytes]:
    with tarfile.open(tgz) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.fixture()
def published(tmp_path):
    return build_publish_chart("edge-pipeline", VERSION, PUBLISH_VALUES, tmp_path / "out")


def test_build_sets_name_version_and_defaults(published, tmp_path):
    assert published == tmp_path / "out" / f"edge-pipeline-{CHART_VERSION}.tgz"
    files = members(published)
    meta = yaml.safe_load(files["edge-pipeline/Chart.yaml"])
    assert (meta["name"], meta["version"], meta["appVersion"]) == ("edge-pipeline", CHART_VERSION, VERSION)
    assert meta["apiVersion"] == "v2" and meta["type"] == "application"
    values_text = files["edge-pipeline/values.yaml"].decode()
    values = yaml.safe_load(values_text)
    assert values["pipelineUrl"] == PUBLISH_VALUES["pipelineUrl"]
    assert values["image"] == {**PUBLISH_VALUES["image"], "pullPolicy": "IfNotPresent"}
    assert values["engine"] == PUBLISH_VALUES["engine"]
    assert values["ociRegistry"] == {"registry": "registry.example.com", "username": "", "password": "",
                                     "existingSecret": "", "plainHttp": False}
    # the source chart's comments survive the merge
    assert "# Engine image repository" in values_text and "# Memory for the engine" in values_text
    assert "edge-pipeline/values.schema.json" in files and "edge-pipeline/templates/deployment.yaml" in files
    assert [p.name for p in published.parent.iterdir()] == [published.name]


def test_published_chart_installs_with_only_credentials(published):
    objs = render(published, {"ociRegistry": {"username": "robot", "password": "t0ken"}}, name="ccfraud")
    (deployment,) = [o for o in objs if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PIPELINE_URL"]["value"] == PUBLISH_VALUES["pipelineUrl"]
    assert env["CONFIG_CPUS"]["value"] == "0.5"
    assert container["image"] == f"registry.example.com/joey/engines/joey-engine@sha256:{'c0' * 32}"
    assert container["resources"]["limits"] == container["resources"]["requests"] == {"cpu": "0.5",
                                                                                      "memory": "900Mi"}
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == VERSION


def test_same_inputs_give_a_byte_identical_chart(tmp_path, monkeypatch):
    source = tmp_path / "source"
    shutil.copytree(chart.chart_source(), source)
    monkeypatch.setenv(envvars.CHART_DIR, str(source))
    first = build_publish_chart("edge-pipeline", VERSION, PUBLISH_VALUES, tmp_path / "a")
    for path in source.rglob("*"):
        os.utime(path, (1.9e9, 1.9e9))  # a fresh checkout: same content, other times
    second = build_publish_chart("edge-pipeline", VERSION, PUBLISH_VALUES, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    other = build_publish_chart("edge-pipeline", VERSION, {**PUBLISH_VALUES, "debug": True}, tmp_path / "c")
    assert other.read_bytes() != first.read_bytes()


def test_push_then_pull_with_helm(published, registry, tmp_path):
    ref = push_chart(published, registry.host, "joey", plain_http=True)
    assert ref.chart == f"oci://{registry.host}/joey/charts/edge-pipeline"
    assert ref.version == CHART_VERSION
    assert ref.reference == f"{registry.host}/joey/charts@{ref.digest}"
    assert ref.record({"edgeBundle": "YWJj"}) == {"chart": ref.chart, "reference": ref.reference,
                                                  "version": CHART_VERSION, "values": {"edgeBundle": "YWJj"}}

    pulled = tmp_path / "pulled"
    pulled.mkdir()
    with helm.RegistryClient(plain_http=True, credentials_file=tmp_path / "helm-registry.json") as client:
        client.pull(ref.chart, version=ref.version, destination=pulled)
    (archive,) = pulled.iterdir()
    assert archive.read_bytes() == published.read_bytes()
    helm.expand(tmp_path / "expanded", archive)
    expanded = tmp_path / "expanded" / "edge-pipeline"
    meta = yaml.safe_load((expanded / "Chart.yaml").read_text())
    assert (meta["name"], meta["version"], meta["appVersion"]) == ("edge-pipeline", CHART_VERSION, VERSION)
    assert (expanded / "values.yaml").read_bytes() == members(published)["edge-pipeline/values.yaml"]

    r = requests.get(f"{registry.url}/v2/joey/charts/edge-pipeline/manifests/{ref.version}",
                     headers={"Accept": mediatypes.OCI_MANIFEST}, timeout=10)
    r.raise_for_status()
    assert sha256(r.content) == ref.digest
    manifest = r.json()
    assert manifest["config"]["mediaType"] == mediatypes.HELM_CONFIG == "application/vnd.cncf.helm.config.v1+json"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == mediatypes.HELM_CHART_CONTENT
    assert layer["mediaType"] == "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    assert layer["digest"] == sha256(published.read_bytes())
    assert manifest["annotations"]["org.opencontainers.image.version"] == CHART_VERSION


def test_a_rebuild_pushes_to_the_same_digest(registry, tmp_path):
    first = push_chart(build_publish_chart("rebuilt", VERSION, PUBLISH_VALUES, tmp_path / "a"),
                       registry.host, "joey", plain_http=True)
    second = push_chart(build_publish_chart("rebuilt", VERSION, PUBLISH_VALUES, tmp_path / "b"),
                        registry.host, "joey", plain_http=True)
    assert first == second


def test_push_with_credentials(published, auth_registry, monkeypatch):
    ref = push_chart(published, auth_registry.host, "joey", plain_http=True,
                     username=auth_registry.username, password=auth_registry.password)
    monkeypatch.setenv(envvars.OCI_USERNAME, auth_registry.username)
    monkeypatch.setenv(envvars.OCI_PASSWORD, auth_registry.password)
    assert push_chart(published, auth_registry.host, "joey", plain_http=True) == ref


def test_push_with_a_wrong_password_says_401(published, auth_registry):
    with pytest.raises(RegistryError) as err:
        push_chart(published, auth_registry.host, "joey", plain_http=True, username="joey", password="nope")
    assert err.value.status == 401 and "OCI_USERNAME" in err.value.hint


def test_push_without_credentials_says_401(published, auth_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("HELM_REGISTRY_CONFIG", str(tmp_path / "no-logins.json"))
    with pytest.raises(RegistryError) as err:
        push_chart(published, auth_registry.host, "joey", plain_http=True)
    assert err.value.status == 401


def test_push_to_nothing_is_unreachable(published):
    with pytest.raises(RegistryUnreachable, match="connection refused"):
        push_chart(published, f"127.0.0.1:{free_port()}", "joey", plain_http=True)


def test_https_to_a_plain_http_registry_hints_plain_http(published, registry):
    with pytest.raises(RegistryUnreachable) as err:
        push_chart(published, registry.host, "joey", plain_http=False)
    assert "--plain-http" in err.value.hint


@pytest.mark.parametrize("values, where", [
    ({"engine": {"memory": "lots"}}, "/engine/memory"),
    ({"engine": {"arch": "mips"}}, "/engine/arch"),
    ({"replicas": 3}, "replicas"),
    ({"pipelineUrl": ""}, "pipelineUrl is required"),
])
def test_bad_publish_values_write_nothing(values, where, tmp_path):
    with pytest.raises(ChartError, match=where):
        build_publish_chart("edge-pipeline", VERSION, chart._merge(PUBLISH_VALUES, values), tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_bad_names_are_refused(tmp_path):
    with pytest.raises(ChartError, match="DNS-1123"):
        build_publish_chart("../Edge_Pipeline", VERSION, PUBLISH_VALUES, tmp_path / "out")
    with pytest.raises(ChartError, match="[Vv]ersion"):
        build_publish_chart("edge-pipeline", "not a version!", PUBLISH_VALUES, tmp_path / "out")


def test_chart_dir_must_be_a_chart(tmp_path, monkeypatch):
    monkeypatch.setenv(envvars.CHART_DIR, str(tmp_path))
    with pytest.raises(ConfigError, match=envvars.CHART_DIR):
        build_publish_chart("edge-pipeline", VERSION, PUBLISH_VALUES, tmp_path / "out")


def test_values_merge_keeps_comments_and_handles_new_and_nested_keys():
    text = "# top\na:\n  # b's comment\n  b: 1\n  c:\n  - x\n  - y\n\n# d's comment\nd: {}\n"
    merged = chart.with_defaults(text, {"a": {"c": ["z"], "n": 2}, "d": {"k": "v"}, "e": True})
    assert helm.values_from_yaml(merged) == {"a": {"b": 1, "c": ["z"], "n": 2}, "d": {"k": "v"}, "e": True}
    assert "# d's comment" in merged and "# top" in merged
    kept = chart.with_defaults(text, {"a": {"c": ["z"]}})
    assert "# b's comment" in kept and helm.values_from_yaml(kept)["a"] == {"b": 1, "c": ["z"]}
