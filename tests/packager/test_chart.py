"""charts/engine rendered by real Helm, every object checked against the Kubernetes 1.30 API schema."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest

from packager import chart
from packager.chart import ChartError, render, render_notes

KUBE_VERSION = "1.30"
IMAGE = "registry.example.com/joey/engines/joey-engine"
PIPELINE_URL = "registry.example.com/joey/pipelines/edge-pipeline:3b1c0d2e-5f1a-5b8e-9c4d-0a1b2c3d4e5f"
BASE = {
    "image": {"repository": IMAGE, "tag": "0.1.0"},
    "pipelineUrl": PIPELINE_URL,
    "ociRegistry": {"username": "robot", "password": "t0ken"},
}
BUNDLE = base64.b64encode(b"export JOIN_TOKEN=4c1e\nexport EDGE_NAME=shop-7\n").decode()

CASES = {
    "no-bundle": {},
    "bundle": {"edgeBundle": BUNDLE},
    "existing-secrets": {"ociRegistry": {"username": "", "password": "", "existingSecret": "pull-creds"},
                         "existingEdgeBundleSecret": "shop-7-bundle"},
    "gpu": {"engine": {"cpus": 4, "memory": "3Gi", "gpus": 2, "arch": "x86", "accel": "cuda"}},
    "arm": {"engine": {"cpus": 0.5, "memory": "900Mi", "gpus": 0, "arch": "arm", "accel": "none"},
            "nodeSelector": {"site": "shop-7"}},
    "everything": {"image": {"repository": IMAGE, "tag": "", "digest": "sha256:" + "ab" * 32},
                   "edgeBundle": BUNDLE, "localInferenceStorage": "512Mi", "plateauPageSize": 100,
                   "debug": True,
                   "verifyKey": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
                   "persistence": {"enabled": True, "size": "5Gi", "storageClass": "-",
                                   "accessModes": ["ReadWriteOncePod"], "existingClaim": ""},
                   "service": {"type": "NodePort", "port": 18080},
                   "podAnnotations": {"example.com/site": "shop-7"}, "podLabels": {"site": "shop-7"},
                   "imagePullSecrets": [{"name": "regcred"}],
                   "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
}


def values(**overrides) -> dict:
    return chart._merge(BASE, overrides)


def objects(case_values: dict) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(chart.chart_source(), case_values,
                                                                  name="shop", namespace="edge")}


def one(objs: dict, kind: str) -> dict:
    (found,) = [o for (k, _), o in objs.items() if k == kind]
    return found


def container(objs: dict) -> dict:
    (c,) = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def env(objs: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(objs)["env"]}


def persist_volume(objs: dict) -> dict:
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    (mount,) = [m for m in container(objs)["volumeMounts"] if m["mountPath"] == "/persist"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return volume


def test_lint_has_no_errors():
    for case in (None, values(), values(**CASES["everything"])):
        report = helm.lint(chart.chart_source(), case, kube_version=f"v{KUBE_VERSION}.0")
        assert [m for m in report["messages"] if m["severity"] >= chart.LINT_ERROR] == [], case


def test_default_values_pass_the_schema():
    with helm.Chart.load(chart.chart_source()) as loaded:
        loaded.validate_schema({})
        assert loaded.metadata["name"] == "engine" and loaded.metadata["apiVersion"] == "v2"
        assert loaded.metadata["type"] == "application"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_valid_kubernetes(case):
    objs = objects(values(**CASES[case]))
    assert {"Deployment", "Service"} <= {k for k, _ in objs}
    for obj in objs.values():
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_pod_contract(case):
    v = values(**CASES[case])
    objs = objects(v)
    deployment, c = one(objs, "Deployment"), container(objs)
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}

    engine = {**{"cpus": 1, "memory": "1Gi", "gpus": 0}, **v.get("engine", {})}
    expected = {"cpu": str(engine["cpus"]), "memory": engine["memory"]}
    assert c["resources"]["requests"] == expected
    gpu = {"nvidia.com/gpu": engine["gpus"]} if engine["gpus"] else {}
    assert c["resources"]["limits"] == {**expected, **gpu}
    assert env(objs)["CONFIG_CPUS"]["value"] == str(engine["cpus"])

    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}

    assert env(objs)["PIPELINE_URL"]["value"] == PIPELINE_URL
    assert env(objs)["OCI_REGISTRY"]["value"] == "registry.example.com"
    assert env(objs)["JOEY_PERSIST_DIR"]["value"] == "/persist"
    for name in ("OCI_USERNAME", "OCI_PASSWORD", "EDGE_BUNDLE"):
        if name in env(objs):
            assert set(env(objs)[name]) == {"name", "valueFrom"}
            assert env(objs)[name]["valueFrom"]["secretKeyRef"]["key"] == name

    service = objs[("Service", "engine-svc")]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= service["spec"]["selector"].items()


def test_credentials_come_from_the_charts_own_secrets():
    objs = objects(values(edgeBundle=BUNDLE))
    oci, bundle = objs[("Secret", "shop-engine-oci")], objs[("Secret", "shop-engine-edge-bundle")]
    assert oci["type"] == bundle["type"] == "Opaque"
    assert base64.b64decode(oci["data"]["OCI_USERNAME"]) == b"robot"
    assert base64.b64decode(oci["data"]["OCI_PASSWORD"]) == b"t0ken"
    assert base64.b64decode(bundle["data"]["EDGE_BUNDLE"]).decode() == BUNDLE
    e = env(objs)
    assert e["OCI_USERNAME"]["valueFrom"]["secretKeyRef"]["name"] == "shop-engine-oci"
    assert e["OCI_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "shop-engine-oci"
    assert e["EDGE_BUNDLE"]["valueFrom"]["secretKeyRef"]["name"] == "shop-engine-edge-bundle"
    rendered = json.dumps(one(objs, "Deployment"))
    assert "t0ken" not in rendered and BUNDLE not in rendered


def test_existing_secrets_are_referenced_not_created():
    objs = objects(values(**CASES["existing-secrets"]))
    assert not [k for k, _ in objs if k == "Secret"]
    e = env(objs)
    assert e["OCI_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "pull-creds", "key": "OCI_USERNAME"}
    assert e["OCI_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pull-creds", "key": "OCI_PASSWORD"}
    assert e["EDGE_BUNDLE"]["valueFrom"]["secretKeyRef"] == {"name": "shop-7-bundle", "key": "EDGE_BUNDLE"}
    assert persist_volume(objs) == {"name": "persist", "persistentVolumeClaim": {"claimName": "shop-engine-persist"}}


def test_anonymous_registry_and_no_bundle_means_no_secrets_and_an_emptydir():
    objs = objects(values(ociRegistry={"username": "", "password": ""}))
    assert not [k for k, _ in objs if k in ("Secret", "PersistentVolumeClaim")]
    assert not {"OCI_USERNAME", "OCI_PASSWORD", "EDGE_BUNDLE"} & set(env(objs))
    assert persist_volume(objs) == {"name": "persist", "emptyDir": {}}
    assert not {"LOCAL_INFERENCE_STORAGE", "PLATEAU_PAGE_SIZE", "DEBUG", "JOEY_VERIFY_KEY",
                "JOEY_OPS_URL"} & set(env(objs))


def test_a_bundle_brings_a_kept_claim_at_persist():
    objs = objects(values(edgeBundle=BUNDLE))
    pvc = objs[("PersistentVolumeClaim", "shop-engine-persist")]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    assert persist_volume(objs) == {"name": "persist", "persistentVolumeClaim": {"claimName": "shop-engine-persist"}}


def test_an_existing_claim_is_mounted_instead_of_creating_one():
    objs = objects(values(edgeBundle=BUNDLE, persistence={"existingClaim": "edge-state"}))
    assert not [k for k, _ in objs if k == "PersistentVolumeClaim"]
    assert persist_volume(objs) == {"name": "persist", "persistentVolumeClaim": {"claimName": "edge-state"}}


def test_everything_set():
    objs = objects(values(**CASES["everything"]))
    c, e = container(objs), env(objs)
    assert c["image"] == f"{IMAGE}@sha256:{'ab' * 32}"
    assert e["LOCAL_INFERENCE_STORAGE"]["value"] == "512Mi" and e["PLATEAU_PAGE_SIZE"]["value"] == "100"
    assert e["DEBUG"]["value"] == "true"
    assert "JOEY_OPS_URL" not in e   # the engine reaches Ops at its EDGE_BUNDLE's OPSCENTER_HOST
    assert e["JOEY_VERIFY_KEY"]["value"] == CASES["everything"]["verifyKey"]
    pvc = objs[("PersistentVolumeClaim", "shop-engine-persist")]
    assert pvc["spec"]["storageClassName"] == "" and pvc["spec"]["accessModes"] == ["ReadWriteOncePod"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert objs[("Service", "engine-svc")]["spec"]["type"] == "NodePort"
    assert objs[("Service", "engine-svc")]["spec"]["ports"][0]["port"] == 18080
    pod = one(objs, "Deployment")["spec"]["template"]
    assert pod["metadata"]["annotations"]["example.com/site"] == "shop-7"
    assert pod["metadata"]["labels"]["site"] == "shop-7"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["tolerations"] == CASES["everything"]["tolerations"]


@pytest.mark.parametrize("interval, expected", [(None, None), (0, "0"), (45, "45")])
def test_update_interval_reaches_the_engine_only_when_set(interval, expected):
    e = env(objects(values(updateInterval=interval)))
    assert (e["JOEY_UPDATE_INTERVAL"]["value"] if "JOEY_UPDATE_INTERVAL" in e else None) == expected


def test_tag_is_used_without_digest():
    assert container(objects(values()))["image"] == f"{IMAGE}:0.1.0"


def test_arch_picks_the_node_architecture():
    arm = one(objects(values(**CASES["arm"])), "Deployment")["spec"]["template"]["spec"]
    assert arm["nodeSelector"] == {"kubernetes.io/arch": "arm64", "site": "shop-7"}
    x86 = one(objects(values()), "Deployment")["spec"]["template"]["spec"]
    assert x86["nodeSelector"] == {"kubernetes.io/arch": "amd64"}


def test_gpus_become_an_nvidia_limit():
    assert container(objects(values(**CASES["gpu"])))["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "nvidia.com/gpu" not in container(objects(values()))["resources"]["limits"]


def test_changing_a_credential_restarts_the_pod():
    def checksum(v):
        return one(objects(v), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"]
    assert checksum(values()) != checksum(values(ociRegistry={"password": "rotated"}))


def test_notes_tell_how_to_reach_the_engine():
    notes = render_notes(chart.chart_source(), values(edgeBundle=BUNDLE), name="shop", namespace="ccfraud01")
    assert "kubectl port-forward svc/engine-svc -n ccfraud01 8080\n" in notes
    assert "curl localhost:8080/pipelines" in notes
    assert "kubectl delete pvc shop-engine-persist -n ccfraud01" in notes


@pytest.mark.parametrize("bad, where", [
    ({"replicaCount": 2}, "replicaCount"),
    ({"engine": {"cpu": 2}}, "cpu"),
    ({"image": {"registry": "x"}}, "registry"),
    ({"engine": {"memory": "lots"}}, "/engine/memory"),
    ({"engine": {"memory": "1 Gi"}}, "/engine/memory"),
    ({"engine": {"arch": "mips"}}, "/engine/arch"),
    ({"engine": {"gpus": -1}}, "/engine/gpus"),
    ({"engine": {"cpus": 0}}, "/engine/cpus"),
    ({"localInferenceStorage": "100MB", "plateauPageSize": 10}, "/localInferenceStorage"),
    ({"localInferenceStorage": "512Mi"}, "/plateauPageSize"),
    ({"plateauPageSize": 100}, "/localInferenceStorage"),
    ({"ociRegistry": {"username": "robot", "password": ""}}, "/ociRegistry/password"),
    ({"image": {"digest": "sha256:short"}}, "/image/digest"),
    ({"persistence": {"size": "big"}}, "/persistence/size"),
    ({"service": {"port": 70000}}, "/service/port"),
    ({"debug": "yes"}, "/debug"),
    ({"updateInterval": -1}, "/updateInterval"),
    ({"updateInterval": "soon"}, "/updateInterval"),
])
def test_schema_refuses_bad_values(bad, where):
    with pytest.raises(ChartError, match=re.escape(where)):
        render(chart.chart_source(), values(**bad))
    report = helm.lint(chart.chart_source(), values(**bad))
    assert any(m["severity"] >= chart.LINT_ERROR and where in m["error"] for m in report["messages"])


def test_missing_required_values_fail_the_render():
    with pytest.raises(ChartError, match="pipelineUrl is required"):
        render(chart.chart_source(), {"image": {"repository": IMAGE}})
    with pytest.raises(ChartError, match="image.repository is required"):
        render(chart.chart_source(), {"pipelineUrl": PIPELINE_URL})


def _schema_paths(schema: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, sub in schema.get("properties", {}).items():
        paths.append((*prefix, key))
        paths.extend(_schema_paths(sub, (*prefix, key)))
    return paths


def test_every_value_is_commented_and_documented():
    source = chart.chart_source()
    schema = json.loads((source / "values.schema.json").read_text())
    lines = (source / "values.yaml").read_text().splitlines()
    key_lines = chart._key_lines(lines)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "chart.md").read_text()
    paths = _schema_paths(schema)
    assert len(paths) > 40
    for path in paths:
        assert path in key_lines, f"{'.'.join(path)} is not in values.yaml"
        assert lines[key_lines[path] - 1].lstrip().startswith("#"), f"{'.'.join(path)} has no comment"
        assert f"`{'.'.join(path)}`" in docs, f"{'.'.join(path)} is not in docs/chart.md"
    assert set(helm.values_from_yaml("\n".join(lines))) == set(schema["properties"])
