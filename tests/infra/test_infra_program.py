"""The Pulumi program, run for each stack file under Pulumi's mocks: what it declares keeps the rules.

Every resource registration is recorded on the wire, so the tests see which inputs are Pulumi secrets.
"""
from __future__ import annotations

import base64
import json

import kubernetes_validate
import pytest
from support.infra import (
    ALL_RUNS,
    KUBERNETES_VERSION,
    Recording,
    docker_edges,
    recorded,
    run,
    stack_settings,
    without_ops,
)

from infra import k8s_args, policies


def types(rec: Recording) -> list[str]:
    return [r.type for r in rec.resources]


def test_dev_has_everything_in_one_cluster():
    t = types(recorded("dev"))
    for component in ("Registry", "OpsCenter", "EngineImage"):
        assert t.count(f"joey:infra:{component}") == 1
    assert t.count("joey:infra:EdgeSite") == 2
    assert t.count("pulumi-python:dynamic/joey:OpsEdge") == 2
    assert t.count("kubernetes:helm.sh/v3:Release") == 2


def test_ops_has_the_central_side_only():
    t = types(recorded("ops"))
    assert "joey:infra:OpsCenter" in t and "kubernetes:apps/v1:Deployment" in t
    assert not [x for x in t if "EdgeSite" in x or "Release" in x or "OpsEdge" in x]
    ops_deployment = recorded("ops").named("ops-deployment").inputs
    env = {e["name"]: e for e in ops_deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["JOEY_OPS_DATABASE"]["valueFrom"]["secretKeyRef"] == {"name": "ops-db-app", "key": "uri"}
    claims = [r.name for r in recorded("ops").of_type("kubernetes:core/v1:PersistentVolumeClaim")]
    assert claims == ["registry-data"], "with PostgreSQL, Ops has no claim of its own"


def test_ops_runs_replicas_on_the_operators_postgresql_rolling_logs_to_the_object_store():
    rec = recorded("ops")
    cluster = rec.named("ops-db").inputs
    assert (cluster["apiVersion"], cluster["kind"]) == ("postgresql.cnpg.io/v1", "Cluster")
    assert cluster["spec"]["instances"] == 3 and cluster["spec"]["storage"] == {"size": "50Gi"}
    assert cluster["spec"]["bootstrap"] == {"initdb": {"database": "joey", "owner": "joey"}}
    deployment = rec.named("ops-deployment").inputs
    assert "replicas" not in deployment["spec"], "the autoscaler owns the count"
    hpa = rec.named("ops-hpa").inputs
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["scaleTargetRef"]["name"] == "ops"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    pdb = rec.named("ops-pdb").inputs
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policies.ops_replicas(rec.kubernetes_objects()) == []
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["JOEY_OPS_S3_BUCKET"]["value"] == "joey-fleet-logs" and env["JOEY_OPS_S3_PREFIX"]["value"] == "ops/logs"
    for key in ("JOEY_OPS_S3_ACCESS_KEY_ID", "JOEY_OPS_S3_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "ops-secrets", "key": key}
    secret = rec.named("ops-secrets")
    assert secret.is_secret("stringData")
    assert secret.inputs["stringData"]["JOEY_OPS_S3_SECRET_ACCESS_KEY"] == rec.stack.injected[
        "joey:opsObjectStoreCredentials.secretAccessKey"]


def test_one_replica_on_sqlite_has_no_autoscaler():
    rec = recorded("dev")
    assert not rec.of_type("kubernetes:autoscaling/") and not rec.of_type("kubernetes:policy/")
    assert rec.named("ops-deployment").inputs["spec"]["replicas"] == 1
    assert [r.name for r in rec.of_type("kubernetes:core/v1:PersistentVolumeClaim")
            if r.name.startswith("ops-")] == ["ops-data"]


def test_edge_stack_creates_the_edge_site_only():
    rec = recorded("edge-store-042")
    t = types(rec)
    assert t.count("joey:infra:EdgeSite") == 1 and "joey:infra:OpsCenter" not in t
    assert not [r for r in rec.resources if r.type.startswith("kubernetes:apps/")], "external registry and Ops"
    enrollment = rec.named("store-042-enrollment")
    assert enrollment.inputs["ops_url"] == "https://ops.joey.example.com"
    assert enrollment.inputs["publish_id"] == 7 and enrollment.inputs["tags"] == ["store", "eu-west", "arm64"]
    assert enrollment.is_secret("token")


@pytest.mark.parametrize("name", ALL_RUNS)
def test_components_are_typed_and_own_their_children(name):
    rec = run(name)
    components = {r.name: r for r in rec.of_type("joey:infra:")}
    assert components
    for r in rec.resources:
        if r.type == "pulumi:pulumi:Stack":
            continue
        if r.parent.split("::")[-2].split("$")[-1].startswith("joey:infra:"):
            parent_name = r.parent.rsplit("::", 1)[1]
            assert r.name.startswith(f"{parent_name}-"), f"{r.name} is not named from its component {parent_name}"
        else:
            assert r.type.startswith("joey:infra:"), f"{r.type} {r.name} is not inside a component"


@pytest.mark.parametrize("name", ALL_RUNS)
def test_declared_kubernetes_objects_keep_the_rules_and_the_schema(name):
    rec = run(name)
    for obj in rec.kubernetes_objects():
        assert policies.kubernetes_rules(obj) == []
        # Custom resources have their operator's schema, not Kubernetes' (the CNPG Cluster: the test above).
        if obj["apiVersion"] != k8s_args.CNPG_API_VERSION:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    assert policies.ops_replicas(rec.kubernetes_objects()) == []


@pytest.mark.parametrize("name", ALL_RUNS)
def test_credentials_are_pulumi_secrets(name):
    rec = run(name)
    found = []
    for r in rec.resources:
        found += policies.secrets_are_secret(f"{r.type}::{r.name}", r.inputs, r.secrets)
    assert found == []
    for export in ("registryPassword", "opsToken"):
        if export in rec.exports:
            assert rec.exports[export][1], f"{export} is exported in plain text"


@pytest.mark.parametrize("name", ALL_RUNS)
def test_no_secret_in_plain_text(name):
    rec = run(name)
    text = rec.plain_text()
    secrets = rec.secret_values()
    # Every bundle's parts must stay hidden too, and base64 of passwords (docker config auth fields).
    for key, value in list(secrets.items()):
        if key.startswith("bundle:"):
            secrets[f"{key}:decoded"] = base64.b64decode(value).decode()
    assert secrets, "the run involved no secret to look for"
    # They are there, under Pulumi's secret markers: the search below would find any that is not.
    everything = json.dumps([r.inputs for r in rec.resources])
    assert any(value in everything for value in secrets.values())
    leaked = [key for key, value in secrets.items() if value in text]
    assert leaked == []


@pytest.mark.parametrize("name", [n for n in ALL_RUNS if n != "ops"])
def test_releases_install_the_publish_chart_with_its_engine(name):
    rec = run(name)
    cfg = stack_settings(rec)
    releases = {r.inputs["name"]: r.inputs for r in rec.of_type("kubernetes:helm.sh/v3:Release")}
    k8s_edges = [e for e in cfg.edges if e.kind == "kubernetes"]
    assert sorted(releases) == sorted(e.name for e in k8s_edges)
    for edge in k8s_edges:
        publish = cfg.publishes[edge.publish]
        release = releases[edge.name]
        assert release["chart"] == publish.chart_url(cfg.registry_host, cfg.registry_namespace)
        assert release["version"] == publish.chart_version
        assert release["namespace"] == edge.k8s_namespace
        values = release["values"]
        assert policies.release_values(edge.name, values) == []
        engine = publish.engine_config
        assert values["engine"] == {"cpus": engine.cpus, "memory": engine.memory, "gpus": engine.gpus,
                                    "arch": engine.arch, "accel": engine.accel}
        assert values["pipelineUrl"] == publish.pipeline_url(cfg.registry_host, cfg.registry_namespace)
        assert values["persistence"] == {"enabled": True, "existingClaim": f"{edge.name}-persist"}
        assert values["ociRegistry"] == {"registry": cfg.registry_host, "existingSecret": f"{edge.name}-oci"}
        has_bundle = edge.name in cfg.edge_bundles or cfg.enrolls_through_ops(edge)
        assert ("existingEdgeBundleSecret" in values) == has_bundle


def test_the_edge_ingress_routes_edge_to_ops():
    for name in ("dev", "ops"):
        objects = run(name).kubernetes_objects()
        assert policies.edge_ingress(objects, "ops") == []
        ingress = next(o for o in objects if o["kind"] == "Ingress" and o["metadata"]["name"] == "ops")
        hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
        assert hosts == {stack_settings(run(name)).ops_host}


def test_edge_names_are_unique_in_every_stack():
    for name in ALL_RUNS:
        cfg = stack_settings(run(name))
        assert policies.unique_edge_names(e.name for e in cfg.edges) == []


def test_the_bundle_from_ops_is_what_the_edge_gets():
    rec = recorded("edge-store-042")
    bundle_secret = rec.named("store-042-bundle")
    assert bundle_secret.is_secret("stringData")
    assert bundle_secret.inputs["stringData"] == {"EDGE_BUNDLE": rec.generated["bundle:store-042"]}
    assert bundle_secret.inputs["metadata"]["name"] == "store-042-edge-bundle"
    release = rec.named("store-042-release")
    assert release.inputs["values"]["existingEdgeBundleSecret"] == "store-042-edge-bundle"
    assert release.secrets == {("repositoryOpts", "password")}, "the values stay readable in previews"


def test_docker_edges_run_the_seeds_docker_command():
    rec = docker_edges()
    cfg = stack_settings(rec)
    engine = cfg.publishes["ccfraud"].engine_config
    containers = {r.inputs["name"]: r for r in rec.of_type("docker:index/container:Container")}
    assert sorted(containers) == ["joey-kiosk-7", "joey-kiosk-8"]
    for name, c in containers.items():
        inputs = c.inputs
        assert policies.docker_engine(name, inputs, engine) == []
        env = dict(e.split("=", 1) for e in inputs["envs"])
        assert {"PIPELINE_URL", "OCI_USERNAME", "OCI_PASSWORD", "CONFIG_CPUS", "EDGE_BUNDLE"} <= set(env)
        assert env["CONFIG_CPUS"] == "2" and inputs["cpus"] == "2" and inputs["memory"] == 2048
        assert inputs["restart"] == "unless-stopped"
        secret_envs = {inputs["envs"][p[1]].split("=", 1)[0] for p in c.secrets if p[0] == "envs"}
        assert secret_envs == {"OCI_PASSWORD", "EDGE_BUNDLE"}
    assert containers["joey-kiosk-7"].inputs["ports"] == [{"internal": 8080, "external": 8081}]
    assert containers["joey-kiosk-8"].inputs["volumes"] == [{"containerPath": "/persist", "hostPath": "/srv/joey"}]
    assert containers["joey-kiosk-7"].inputs["volumes"][0]["containerPath"] == "/persist"
    # kiosk-8 came with its bundle: no enrollment; the other two enroll through Ops.
    enrolled = sorted(r.inputs["edge_name"] for r in rec.of_type("pulumi-python:dynamic"))
    assert enrolled == ["kiosk-7", "store-042"]
    images = rec.of_type("docker:index/remoteImage:RemoteImage")
    assert images and all(policies.pinned(i.inputs["name"]) for i in images)
    providers = rec.of_type("pulumi:providers:docker")
    assert sorted(p.inputs["host"] for p in providers) == ["ssh://joey@kiosk-7", "ssh://joey@kiosk-8"]


def test_an_edge_without_ops_has_no_bundle():
    rec = without_ops()
    assert not rec.of_type("pulumi-python:dynamic")
    assert not [r for r in rec.resources if r.name.endswith("-bundle")]
    values = rec.named("store-042-release").inputs["values"]
    assert "existingEdgeBundleSecret" not in values and "opsUrl" not in values


def test_the_pull_secret_lets_the_kubelet_log_in():
    rec = recorded("edge-store-042")
    pull = rec.named("store-042-pull")
    assert pull.inputs["type"] == "kubernetes.io/dockerconfigjson" and pull.is_secret("stringData")
    doc = json.loads(pull.inputs["stringData"][".dockerconfigjson"])
    password = rec.stack.injected["joey:registryPassword"]
    assert doc == json.loads(k8s_args.docker_config_json("registry.joey.example.com", "joey", password))
    assert base64.b64decode(doc["auths"]["registry.joey.example.com"]["auth"]).decode() == f"joey:{password}"
