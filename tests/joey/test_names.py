"""joey.names: every derived name round-trips (build then parse gives the parts back, parse then build gives the
text back), bad names raise ReferenceError_ with a hint, and every caller tells a host from a path one way."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from infra.settings import Host
from joey import names
from joey.bundle import BundleError, EdgeBundle
from joey.errors import ReferenceError_

DIGEST = "sha256:" + "ab" * 32
VERSION = "3f2a9c1e-0b6d-5e2f-9a7c-1d2e3f4a5b6c"


# ---------------------------------------------------------------- references

@pytest.mark.parametrize("host,namespace,layout,text", [
    ("registry.example.com", "joey", None, f"registry.example.com/joey/pipelines/ccfraud:{VERSION}"),
    ("localhost:5000", "a/b", None, f"localhost:5000/a/b/pipelines/ccfraud:{VERSION}"),
    ("reg:5000", "", None, f"reg:5000/pipelines/ccfraud:{VERSION}"),
    ("[::1]:5000", "joey", None, f"[::1]:5000/joey/pipelines/ccfraud:{VERSION}"),
    (None, "", Path("/tmp/store"), f"oci:/tmp/store:pipelines/ccfraud:{VERSION}"),
    (None, "", None, f"pipelines/ccfraud:{VERSION}"),
])
def test_pipeline_reference_round_trips(host, namespace, layout, text):
    built = names.pipeline_ref("ccfraud", VERSION, host=host, namespace=namespace, layout=layout)
    assert str(built) == text
    parsed = names.parse(text)
    assert parsed == built
    assert (parsed.host, parsed.tag, names.pipeline_name(parsed.repository)) == (host, VERSION, "ccfraud")
    assert str(names.parse(str(parsed))) == text


def test_local_store_short_form_is_the_pipelines_repository():
    assert names.parse(f"ccfraud:{VERSION}") == names.pipeline_ref("ccfraud", VERSION)
    by_digest = names.parse(f"ccfraud@{DIGEST}")
    assert (by_digest.repository, by_digest.digest, by_digest.reference) == ("pipelines/ccfraud", DIGEST, DIGEST)
    assert str(by_digest) == f"pipelines/ccfraud@{DIGEST}"


@pytest.mark.parametrize("text", [
    "", "oci:", "Bad/Name:1", "ccfraud:" + "x" * 200, f"ccfraud@sha256:{'z' * 64}", "ccfraud@md5:00",
    "registry.example.com/:1", "a..b/x:1", "reg:99999/joey/pipelines/p:1",
])
def test_bad_references_raise_with_a_hint(text):
    with pytest.raises(ReferenceError_) as e:
        names.parse(text)
    assert e.value.hint and "pipelines/NAME:VERSION" in e.value.hint


@pytest.mark.parametrize("text,host", [
    (f"localhost:5000/joey/pipelines/p:{VERSION}", "localhost:5000"), (f"[::1]:80/p@{DIGEST}", "[::1]:80"),
    (f"p:{VERSION}", None), (f"oci:/tmp/store:pipelines/p:{VERSION}", None), ("r/p:1 $(x)", None),
])
def test_registry_host_of_a_reference(text, host):
    assert names.registry_host(text) == host


# ---------------------------------------------------------------- repository paths

@pytest.mark.parametrize("build,kind,namespace,text", [
    (names.pipeline_repository, names.PIPELINES, "joey", "joey/pipelines/ccfraud"),
    (names.pipeline_repository, names.PIPELINES, "", "pipelines/ccfraud"),
    (names.chart_repository, names.CHARTS, "a/b", "a/b/charts/ccfraud"),
    (names.chart_repository, names.CHARTS, "", "charts/ccfraud"),
    (names.engine_repository, names.ENGINES, "joey", "joey/engines/ccfraud"),
])
def test_repository_paths_round_trip(build, kind, namespace, text):
    assert build(namespace, "ccfraud") == text
    assert names.repository_name(text, kind) == "ccfraud"
    assert build(namespace, names.repository_name(text, kind)) == text


def test_engine_repository_defaults_to_joeys_engine():
    assert names.engine_repository("joey") == "joey/engines/joey-engine"


@pytest.mark.parametrize("repository", ["ccfraud", "joey/charts/ccfraud", "xpipelines/ccfraud", "pipelines/"])
def test_other_repositories_are_not_pipelines(repository):
    assert names.repository_name(repository) is None
    with pytest.raises(ReferenceError_) as e:
        names.pipeline_name(repository)
    assert e.value.hint


# ---------------------------------------------------------------- tags and versions

def test_record_tag_round_trips():
    tag = names.record_tag(VERSION)
    assert tag == f"publish-{VERSION}"
    assert names.record_version(tag) == VERSION
    assert names.record_tag(names.record_version(tag)) == tag


@pytest.mark.parametrize("tag", [VERSION, "publish-", "sha256-" + "ab" * 32 + ".sig", "latest"])
def test_other_tags_are_not_records(tag):
    assert names.record_version(tag) is None


def test_chart_version_round_trips():
    version = names.chart_version(VERSION)
    assert version == f"0.0.1-{VERSION}"
    assert names.chart_pipeline_version(version) == VERSION
    assert names.chart_version(names.chart_pipeline_version(version)) == version


@pytest.mark.parametrize("version", [VERSION, "0.0.1-", "1.0.0"])
def test_bad_chart_versions_raise_with_a_hint(version):
    with pytest.raises(ReferenceError_) as e:
        names.chart_pipeline_version(version)
    assert e.value.hint


# ---------------------------------------------------------------- charts and the engine image

@pytest.mark.parametrize("kw,url", [
    ({"host": "registry.example.com", "namespace": "joey"}, "oci://registry.example.com/joey/charts/ccfraud"),
    ({"host": "localhost:5000"}, "oci://localhost:5000/charts/ccfraud"),
    ({"layout": Path("/tmp/store")}, "oci:/tmp/store:charts/ccfraud"),
])
def test_chart_url_and_reference_round_trip(kw, url):
    assert names.chart_url("ccfraud", **kw) == url
    chart = names.parse(url)
    assert (chart.host, chart.layout, names.repository_name(chart.repository, names.CHARTS)) == \
        (kw.get("host"), kw.get("layout"), "ccfraud")
    reference = names.chart_reference(DIGEST, **kw)
    parsed = names.parse(reference)
    assert (parsed.host, parsed.layout, parsed.digest) == (kw.get("host"), kw.get("layout"), DIGEST)
    assert parsed.repository == names.chart_repository(kw.get("namespace", ""), "")
    assert str(parsed) == reference


def test_chart_root_is_what_helm_pushes_to():
    assert names.chart_url("", host="localhost:5000", namespace="joey") == "oci://localhost:5000/joey/charts"


@pytest.mark.parametrize("kw,image", [
    ({"host": "registry.example.com", "namespace": "joey"}, "registry.example.com/joey/engines/joey-engine:0.4.0"),
    ({"host": "localhost:5000"}, "localhost:5000/engines/joey-engine:0.4.0"),
    ({}, "localhost/joey-engine:0.4.0"),
])
def test_engine_image_round_trips(kw, image):
    assert names.engine_image("0.4.0", **kw) == image
    ref = names.parse(image)
    assert (ref.tag, ref.repository.rsplit("/", 1)[-1]) == ("0.4.0", names.ENGINE_NAME)
    assert str(ref) == image
    repository, tag, digest = names.image_parts(image)
    assert (f"{repository}:{tag}", digest) == (image, None)


def test_image_parts_splits_any_image():
    assert names.image_parts(f"ghcr.io/x/Mini:v1@{DIGEST}") == ("ghcr.io/x/Mini", "v1", DIGEST)
    assert names.image_parts("localhost:5000/engine") == ("localhost:5000/engine", None, None)


# ---------------------------------------------------------------- one host rule, every caller

HOSTS = {
    "localhost": True, "localhost:5000": True, "registry.example.com": True, "127.0.0.1:5000": True,
    "reg:5000": True, "[::1]:5000": True, "[::1]": True,
    "reg": False, "reg:": False, "reg:99999": False, "a.b:0": False, "[zz]:5000": False, "-": False,
    "a.b/c": False, "": False,
}


def _accepted_as_registry(host: str) -> bool:
    try:
        return names.registry_target(f"{host}/joey") == (host, "joey")
    except ReferenceError_:
        return False


def _accepted_in_reference(host: str) -> bool:
    try:
        return names.parse(f"{host}/joey/pipelines/p:1").host == host
    except ReferenceError_:
        return False


def _accepted_by_infra(host: str) -> bool:
    try:
        return TypeAdapter(Host).validate_python(host) == host
    except ValidationError:
        return False


def _accepted_by_bundle(host: str) -> bool:
    try:
        EdgeBundle(edge_name="edge-1", opscenter_host="ops.example.com", pipeline_url="r.example.com/j/pipelines/p:1",
                   join_token="t", oci_registry=host or None)
        return bool(host)
    except BundleError:
        return False


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_every_caller_tells_a_host_the_same_way(host):
    expected = HOSTS[host]
    assert names.is_host(host) is expected
    assert _accepted_as_registry(host) is expected
    assert _accepted_in_reference(host) is expected
    assert _accepted_by_infra(host) is expected
    # An EDGE_BUNDLE value must be literal to `sh`, which brackets are not (globs): the IPv6 form is the one a
    # bundle refuses for that reason alone.
    assert _accepted_by_bundle(host) is (expected and "[" not in host)
