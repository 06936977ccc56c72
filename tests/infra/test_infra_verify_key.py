"""The stack's verifyKey reaches every engine: as the chart value (rendered by real Helm) and as Docker env."""
from __future__ import annotations

from infra import k8s_args
from joey import envvars
from joey.pipeline_config import EngineConfig
from joey.signing import generate_keypair
from packager.chart import chart_source, render

ENGINE = EngineConfig(cpus=1.0, memory="900Mi")
IMAGE = "r.example.com/joey/engines/joey-engine@sha256:" + "a" * 64


def _pem(tmp_path) -> str:
    return generate_keypair(tmp_path / "k")[1].read_text()


def test_release_values_carry_the_verify_key_into_the_engine_env(tmp_path):
    pem = _pem(tmp_path)
    values = k8s_args.engine_release_values(
        engine=ENGINE, pipeline_url="r.example.com/joey/pipelines/p:1", image=IMAGE, registry_host="r.example.com",
        oci_secret="oci", pull_secret="pull", claim="c", bundle_secret=None, bundle_sha256=None, verify_key=pem)
    assert values["verifyKey"] == pem
    objects = render(chart_source(), values, name="edge")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[envvars.VERIFY_KEY]["value"].strip() == pem.strip()


def test_without_a_key_nothing_is_set(tmp_path):
    values = k8s_args.engine_release_values(
        engine=ENGINE, pipeline_url="r.example.com/joey/pipelines/p:1", image=IMAGE, registry_host="r.example.com",
        oci_secret="oci", pull_secret="pull", claim="c", bundle_secret=None, bundle_sha256=None)
    assert "verifyKey" not in values
    env = k8s_args.engine_container_env(engine=ENGINE, pipeline_url="p", registry_host="r",
                                        verify_key=_pem(tmp_path))
    assert env[envvars.VERIFY_KEY].startswith("-----BEGIN PUBLIC KEY-----")
