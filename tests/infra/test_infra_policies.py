"""Each rule of infra/policies.py holds on a good object and fails on a bad one."""
from __future__ import annotations

import pytest

from infra import k8s_args, policies
from joey.pipeline_config import EngineConfig

ENGINE = EngineConfig(cpus=2.0, memory="900Mi")
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"registry.example.com/joey/engines/joey-engine@{DIGEST}"


def engine_deployment() -> dict:
    """An engine Deployment as the chart renders one for an edge with a bundle."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "edge-engine", "labels": {"app.kubernetes.io/component": "engine"}},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                "containers": [{
                    "name": "engine", "image": IMAGE,
                    "securityContext": {"allowPrivilegeEscalation": False, "privileged": False},
                    "env": [
                        {"name": "CONFIG_CPUS", "value": "2"},
                        {"name": "OCI_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "oci", "key": "OCI_PASSWORD"}}},
                        {"name": "EDGE_BUNDLE", "valueFrom": {"secretKeyRef": {"name": "b", "key": "EDGE_BUNDLE"}}},
                    ],
                    "resources": {"limits": {"cpu": "2", "memory": "900Mi"},
                                  "requests": {"cpu": "2000m", "memory": "943718400"}},
                    "volumeMounts": [{"name": "persist", "mountPath": "/persist"}],
                }],
                "volumes": [{"name": "persist", "persistentVolumeClaim": {"claimName": "edge-persist"}}],
            }}},
    }


def container(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]["containers"][0]


def changed(change) -> dict:
    obj = engine_deployment()
    change(obj)
    return obj


def rules_of(found: list[policies.Violation]) -> set[str]:
    return {v.rule for v in found}


def test_good_engine_deployment_keeps_every_rule():
    obj = engine_deployment()
    assert policies.kubernetes_rules(obj) == []
    assert policies.engine_limits(obj, ENGINE) == []


@pytest.mark.parametrize("change", [
    lambda o: container(o)["resources"]["limits"].update(cpu="1"),
    lambda o: container(o)["resources"]["requests"].update(memory="1Gi"),
    lambda o: container(o)["resources"].pop("limits"),
    lambda o: container(o)["env"][0].update(value="4"),
    lambda o: container(o)["resources"]["limits"].update({"nvidia.com/gpu": 1}),
], ids=["cpu-limit", "memory-request", "no-limits", "config-cpus", "gpu"])
def test_engine_limits_must_equal_the_publish(change):
    found = policies.engine_limits(changed(change), ENGINE)
    assert rules_of(found) == {"engine-limits"}


def test_engine_limits_apply_to_engine_workloads_only():
    obj = changed(lambda o: o["metadata"]["labels"].update({"app.kubernetes.io/component": "registry"}))
    container(obj)["resources"] = {}
    assert policies.engine_limits(obj, ENGINE) == []


@pytest.mark.parametrize("change", [
    lambda o: container(o).pop("volumeMounts"),
    lambda o: o["spec"]["template"]["spec"].update(volumes=[{"name": "persist", "emptyDir": {}}]),
], ids=["no-mount", "emptydir"])
def test_a_bundle_needs_a_claim_at_persist(change):
    assert rules_of(policies.persist_for_bundle(changed(change))) == {"persist-for-bundle"}


def test_no_bundle_no_claim_needed():
    obj = changed(lambda o: container(o)["env"].pop(2))
    container(obj).pop("volumeMounts")
    assert policies.persist_for_bundle(obj) == []


@pytest.mark.parametrize("env", [
    {"name": "EDGE_BUNDLE", "value": "ZXhwb3J0"},
    {"name": "OCI_PASSWORD", "value": "hunter2"},
    {"name": "JOEY_OPS_TOKEN", "value": "t0ken"},
    {"name": "JOEY_OPS_DATABASE", "value": "postgresql://joey:pw@db/joey"},
], ids=lambda e: e["name"])
def test_credentials_only_from_secrets(env):
    obj = changed(lambda o: container(o)["env"].append(env))
    assert rules_of(policies.secret_env(obj)) == {"secret-env"}


def test_a_database_url_without_password_may_be_plain():
    obj = changed(lambda o: container(o)["env"].append({"name": "JOEY_OPS_DATABASE",
                                                        "value": "sqlite:////data/joey-ops.db"}))
    assert policies.secret_env(obj) == []


@pytest.mark.parametrize("image", ["registry.example.com/joey/engine:1.0", "engine", f"x@sha256:{'z' * 64}"])
def test_images_pinned_by_digest(image):
    assert rules_of(policies.images_pinned(changed(lambda o: container(o).update(image=image)))) == {"images-pinned"}


@pytest.mark.parametrize("change", [
    lambda o: container(o)["securityContext"].update(privileged=True),
    lambda o: container(o)["securityContext"].pop("allowPrivilegeEscalation"),
    lambda o: o["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"),
    lambda o: container(o)["securityContext"].update(runAsNonRoot=False),
    lambda o: container(o)["securityContext"].update(runAsUser=0),
], ids=["privileged", "escalation", "no-nonroot", "container-root", "uid-0"])
def test_pod_security(change):
    assert rules_of(policies.pod_security(changed(change))) == {"pod-security"}


def registry_deployment() -> dict:
    obj_labels = k8s_args.labels("registry", "registry")
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "registry", "labels": obj_labels},
            "spec": k8s_args.registry_deployment_spec(image=IMAGE, obj_labels=obj_labels, auth_secret="registry-auth",
                                                      claim="registry-data")}


def test_the_registry_spec_keeps_every_rule():
    assert policies.kubernetes_rules(registry_deployment()) == []


@pytest.mark.parametrize("change", [
    lambda c, p: c.update(env=[e for e in c["env"] if e["name"] != "REGISTRY_AUTH"]),
    lambda c, p: c.update(env=[e for e in c["env"] if e["name"] != "REGISTRY_AUTH_HTPASSWD_PATH"]),
    lambda c, p: p.update(volumes=[{"name": "auth", "emptyDir": {}} if v["name"] == "auth" else v
                                   for v in p["volumes"]]),
], ids=["no-auth", "no-htpasswd", "htpasswd-not-from-secret"])
def test_the_registry_requires_auth(change):
    obj = registry_deployment()
    pod = obj["spec"]["template"]["spec"]
    change(pod["containers"][0], pod)
    assert rules_of(policies.registry_auth(obj)) == {"registry-auth"}


def ops_ingress(**overrides) -> dict:
    spec = k8s_args.ingress_spec(host="ops.example.com", tls_secret="ops-tls", ingress_class="",
                                 service="ops", paths=("/edge", "/v1/api"))
    spec.update(overrides)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ops"}, "spec": spec}


def test_the_edge_ingress_routes_edge_to_ops_with_tls():
    assert policies.edge_ingress([ops_ingress()], "ops") == []


@pytest.mark.parametrize("objects,service", [
    ([ops_ingress(tls=[])], "ops"),
    ([ops_ingress(tls=[{"hosts": ["other.example.com"], "secretName": "t"}])], "ops"),
    ([ops_ingress()], "not-ops"),
    ([], "ops"),
], ids=["no-tls", "tls-other-host", "other-service", "no-ingress"])
def test_the_edge_ingress_can_be_missing(objects, service):
    assert rules_of(policies.edge_ingress(objects, service)) == {"edge-ingress"}


def test_edge_names_unique():
    assert policies.unique_edge_names(["a", "b"]) == []
    assert rules_of(policies.unique_edge_names(["a", "b", "a"])) == {"unique-edge-names"}


def release_values(**overrides) -> dict:
    values = k8s_args.engine_release_values(
        engine=ENGINE, pipeline_url="r.example.com/joey/pipelines/p:1", image=IMAGE, registry_host="r.example.com",
        oci_secret="oci", pull_secret="pull", claim="c", bundle_secret="b", bundle_sha256="0" * 64)
    values.update(overrides)
    return values


def test_release_values_name_secrets_only():
    assert policies.release_values("edge", release_values()) == []


@pytest.mark.parametrize("overrides,rule", [
    ({"edgeBundle": "ZXhwb3J0"}, "release-values"),
    ({"ociRegistry": {"registry": "r", "username": "joey", "password": "hunter2"}}, "release-values"),
    ({"image": {"repository": "r/e", "tag": "1.0"}}, "images-pinned"),
    ({"engine": {"arch": "x86"}}, "engine-limits"),
], ids=["bundle", "password", "tag", "engine"])
def test_release_values_fail(overrides, rule):
    assert rules_of(policies.release_values("edge", release_values(**overrides))) == {rule}


def docker_inputs(**overrides) -> dict:
    inputs = {"name": "joey-e", "privileged": False, "cpus": "2.0", "memory": 900,
              "envs": ["CONFIG_CPUS=2", "EDGE_BUNDLE=ZXhw", "OCI_PASSWORD=pw"],
              "volumes": [{"containerPath": "/persist", "volumeName": "joey-e-persist"}]}
    inputs.update(overrides)
    return inputs


def test_docker_engine_good():
    assert policies.docker_engine("e", docker_inputs(), ENGINE) == []
    assert policies.docker_engine("e", docker_inputs(), None) == []


@pytest.mark.parametrize("overrides,rule", [
    ({"privileged": True}, "pod-security"),
    ({"cpus": "1.0"}, "engine-limits"),
    ({"memory": 1024}, "engine-limits"),
    ({"volumes": []}, "persist-for-bundle"),
], ids=["privileged", "cpus", "memory", "no-persist"])
def test_docker_engine_fails(overrides, rule):
    assert rules_of(policies.docker_engine("e", docker_inputs(**overrides), ENGINE)) == {rule}


def test_credentials_must_be_pulumi_secrets():
    inputs = {"kind": "Secret", "stringData": {"OCI_PASSWORD": "pw"},
              "repositoryOpts": {"username": "joey", "password": "pw"},
              "envs": ["CONFIG_CPUS=1", "EDGE_BUNDLE=ZXhw"],
              "spec": {"env": [{"name": "OCI_PASSWORD", "value": "pw"}]},
              "token": "t"}
    marked = [("stringData",), ("repositoryOpts", "password"), ("envs", 1), ("spec", "env", 0, "value"), ("token",)]
    assert policies.secrets_are_secret("r", inputs, marked) == []
    for i, path in enumerate(marked):
        found = policies.secrets_are_secret("r", inputs, marked[:i] + marked[i + 1:])
        assert [v.message.split(" ")[0] for v in found] == [".".join(map(str, path))]
        assert all("pw" not in str(v) for v in found)


def ops_objects(*, scaled: bool, database: tuple[str, str] | None, pdb: bool = True) -> list[dict]:
    """Ops' Deployment (and, scaled, its autoscaler and disruption budget) as the OpsCenter component declares them."""
    obj_labels = k8s_args.labels("ops", "ops")
    spec = k8s_args.ops_deployment_spec(image=IMAGE, obj_labels=obj_labels, secret="ops-secrets",
                                        public_url="https://ops.example.com", database=database,
                                        claim=None if database else "ops-data", scaled=scaled)
    objects = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": k8s_args.metadata("ops", "joey", obj_labels),
                "spec": spec}]
    if scaled:
        objects.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                        "metadata": k8s_args.metadata("ops", "joey", obj_labels), "spec": k8s_args.hpa_spec("ops", 2, 4)})
    if pdb:
        objects.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                        "metadata": k8s_args.metadata("ops", "joey", obj_labels), "spec": k8s_args.pdb_spec(obj_labels)})
    return objects


def test_ops_replicas_on_postgresql_under_a_budget_keep_the_rule():
    assert policies.ops_replicas(ops_objects(scaled=True, database=("ops-db-app", "uri"))) == []
    assert policies.ops_replicas(ops_objects(scaled=False, database=None, pdb=False)) == []


def test_ops_replicas_need_a_budget_and_no_sqlite():
    assert rules_of(policies.ops_replicas(ops_objects(scaled=True, database=("ops-db-app", "uri"),
                                                      pdb=False))) == {"ops-replicas"}
    sqlite = ops_objects(scaled=False, database=None)
    sqlite[0]["spec"]["replicas"] = 2
    messages = [v.message for v in policies.ops_replicas(sqlite)]
    assert len(messages) == 2 and "not SQLite" in messages[0] and "claim" in messages[1]
    with pytest.raises(ValueError, match="SQLite"):
        ops_objects(scaled=True, database=None)


def test_the_object_store_secret_only_from_a_secret():
    obj = ops_objects(scaled=True, database=("ops-db-app", "uri"))[0]
    container(obj)["env"].append({"name": "JOEY_OPS_S3_SECRET_ACCESS_KEY", "value": "plain"})
    assert rules_of(policies.secret_env(obj)) == {"secret-env"}
