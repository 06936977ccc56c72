"""What each Release installs: the engine chart rendered by real Helm with the values the program passes.

The program points each Release at the publish's chart in the registry (charts/engine renamed, with the
publish's defaults); here the repository's charts/engine is rendered with the same values, checked against
the Kubernetes schema, and held to the same rules, engine limits against the publish's engine config.
"""
from __future__ import annotations

import copy
import hashlib

import kubernetes_validate
import pytest
from support.infra import ALL_RUNS, KUBERNETES_VERSION, run, stack_settings

from infra import policies
from packager import chart


def releases(name: str):
    """(edge, publish, release inputs) of every Release of a run."""
    rec = run(name)
    cfg = stack_settings(rec)
    edges = {e.name: e for e in cfg.edges}
    for r in rec.of_type("kubernetes:helm.sh/v3:Release"):
        edge = edges[r.inputs["name"]]
        yield edge, cfg.publishes[edge.publish], r.inputs


def bundle_of(name: str, edge: str) -> str:
    """The EDGE_BUNDLE the program put in the edge's Secret."""
    return run(name).named(f"{edge}-bundle").inputs["stringData"]["EDGE_BUNDLE"]


def render(release: dict) -> list[dict]:
    return chart.render(chart.chart_source(), release["values"], name=release["name"],
                        namespace=release["namespace"])


@pytest.mark.parametrize("name", [n for n in ALL_RUNS if n != "ops"])
def test_the_installed_charts_keep_the_rules(name):
    installed = list(releases(name))
    assert installed
    for edge, publish, release in installed:
        check_installed(name, edge, publish, release)


def check_installed(name, edge, publish, release) -> None:
    objects = render(release)
    kinds = sorted(o["kind"] for o in objects)
    # The Secrets and the claim are the program's: the chart only names them.
    assert kinds == ["Deployment", "Service"]
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        assert policies.kubernetes_rules(obj) == []
    engine = next(o for o in objects if o["kind"] == "Deployment")
    assert policies.is_engine(engine)
    assert policies.engine_limits(engine, publish.engine_config) == []
    pod = engine["spec"]["template"]["spec"]
    assert {"name": "persist", "persistentVolumeClaim": {"claimName": f"{edge.name}-persist"}} in pod["volumes"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["OCI_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{edge.name}-oci"
    assert pod["imagePullSecrets"] == [{"name": f"{edge.name}-pull"}]
    if "existingEdgeBundleSecret" in release["values"]:
        assert env["EDGE_BUNDLE"]["valueFrom"]["secretKeyRef"] == {"name": f"{edge.name}-edge-bundle",
                                                                   "key": "EDGE_BUNDLE"}
        # A new bundle restarts the engine: the pod template changes with it.
        bundle = bundle_of(name, edge.name)
        annotations = engine["spec"]["template"]["metadata"]["annotations"]
        assert annotations["checksum/edge-bundle"] == hashlib.sha256(bundle.encode()).hexdigest()
    else:
        assert "EDGE_BUNDLE" not in env


def test_a_release_that_overrides_the_engine_fails_the_limits_rule():
    edge, publish, release = next(releases("edge-store-042"))
    bad = copy.deepcopy(release)
    bad["values"]["engine"]["cpus"] = 1
    engine = next(o for o in render(bad) if o["kind"] == "Deployment")
    assert {v.rule for v in policies.engine_limits(engine, publish.engine_config)} == {"engine-limits"}


def test_a_release_given_credentials_as_values_fails():
    edge, publish, release = next(releases("edge-store-042"))
    bad = copy.deepcopy(release)
    bad["values"].pop("existingEdgeBundleSecret")
    bad["values"]["edgeBundle"] = "ZXhwb3J0IEJVTkRMRV9WRVJTSU9OPTE="
    bad["values"]["ociRegistry"] = {"registry": "r.example.com", "username": "joey", "password": "hunter2"}
    assert {v.rule for v in policies.release_values(edge.name, bad["values"])} == {"release-values"}
    # Helm would then keep them in Secrets of the chart's own, and in the release record.
    assert sorted(o["kind"] for o in render(bad)).count("Secret") == 2
