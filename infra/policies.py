"""The rules every Joey stack keeps, as plain functions.

Each rule takes Kubernetes objects in their manifest form (what k8s_args builds, what Helm renders) or a
Pulumi resource's inputs, and returns the Violations it finds; an empty list means the rule holds. Tests
run them on everything the program declares and on the charts its Releases install; policy/ serves them to
`pulumi preview --policy-pack`. Messages name the object and field at fault, never a value.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from joey import envvars, quantity
from joey.pipeline_config import EngineConfig

PERSIST = "/persist"
EDGE_PATH = "/edge"
# Variables whose value is a credential: they may only come from a Secret (env valueFrom.secretKeyRef).
SECRET_ENV = frozenset({envvars.EDGE_BUNDLE, envvars.OCI_PASSWORD, envvars.OPS_TOKEN, "REGISTRY_HTTP_SECRET",
                        envvars.OPS_S3_SECRET_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY"})
# Input fields that hold a credential wherever they appear in a resource's inputs (compared lower-case).
SECRET_FIELDS = frozenset({"password", "token", "edge_bundle", "edgebundle", "htpasswd", ".dockerconfigjson"})
# Helm values that would carry a credential into the Release (its state and the cluster's release history).
SECRET_VALUES = (("ociRegistry", "password"), ("edgeBundle",))
WORKLOAD_KINDS = frozenset({"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"})
_PINNED = re.compile(r"@sha256:[a-f0-9]{64}$")
_URL_CREDENTIALS = re.compile(r"://[^/@\s:]+:[^/@\s]+@")


@dataclass(frozen=True)
class Violation:
    rule: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.subject}: {self.message}"


# ---------------------------------------------------------------- Kubernetes objects


def subject(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')}/{where}{meta.get('name', '?')}"


def pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec of a workload object, None for anything else."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind not in WORKLOAD_KINDS:
        return None
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return (spec.get("template") or {}).get("spec") or {}


def containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def _env(container: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {e["name"]: e for e in container.get("env") or [] if "name" in e}


def is_engine(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return pod_spec(obj) is not None and labels.get("app.kubernetes.io/component") == "engine"


def cpu_millis(value: Any) -> int:
    """Millicores in a Kubernetes CPU quantity: 2, 1.5, "1.5", "500m"."""
    text = str(value).strip()
    try:
        return int(Decimal(text[:-1])) if text.endswith("m") else int(Decimal(text) * 1000)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a CPU quantity") from None


def engine_limits(obj: Mapping[str, Any], engine: EngineConfig) -> list[Violation]:
    """An engine workload's limits and requests are its publish's engine config, and so is CONFIG_CPUS."""
    rule, where = "engine-limits", subject(obj)
    pod = pod_spec(obj)
    if pod is None or not is_engine(obj):
        return []
    found = []
    for c in pod.get("containers") or []:
        resources = c.get("resources") or {}
        for part in ("limits", "requests"):
            got = resources.get(part) or {}
            try:
                cpu_ok = "cpu" in got and cpu_millis(got["cpu"]) == cpu_millis(engine.cpus)
                memory_ok = "memory" in got and quantity.memory_bytes(str(got["memory"])) == quantity.memory_bytes(
                    engine.memory)
            except ValueError as e:
                found.append(Violation(rule, where, f"container {c.get('name')}: {part}: {e}"))
                continue
            if not cpu_ok:
                found.append(Violation(rule, where, f"container {c.get('name')}: {part}.cpu is not the "
                                                    f"publish's {engine.cpus} CPUs"))
            if not memory_ok:
                found.append(Violation(rule, where, f"container {c.get('name')}: {part}.memory is not the "
                                                    f"publish's {engine.memory}"))
        gpus = int((resources.get("limits") or {}).get("nvidia.com/gpu", 0))
        if gpus != engine.gpus:
            found.append(Violation(rule, where, f"container {c.get('name')}: limits.nvidia.com/gpu is {gpus}, "
                                                f"the publish asks for {engine.gpus}"))
        cpus_env = _env(c).get(envvars.CONFIG_CPUS, {}).get("value")
        if cpus_env is None or cpu_millis(cpus_env) != cpu_millis(engine.cpus):
            found.append(Violation(rule, where, f"container {c.get('name')}: {envvars.CONFIG_CPUS} is not the "
                                                f"publish's {engine.cpus}"))
    return found


def persist_for_bundle(obj: Mapping[str, Any]) -> list[Violation]:
    """A workload given an EDGE_BUNDLE mounts a PersistentVolumeClaim at /persist: the join token works
    once, and the credential it is exchanged for must outlive the pod."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    found = []
    for c in containers(pod):
        if envvars.EDGE_BUNDLE not in _env(c):
            continue
        mounts = [m for m in c.get("volumeMounts") or [] if m.get("mountPath", "").rstrip("/") == PERSIST]
        if not mounts or "persistentVolumeClaim" not in volumes.get(mounts[0].get("name"), {}):
            found.append(Violation("persist-for-bundle", subject(obj),
                                   f"container {c.get('name')} has {envvars.EDGE_BUNDLE} but no "
                                   f"PersistentVolumeClaim mounted at {PERSIST}"))
    return found


def secret_env(obj: Mapping[str, Any]) -> list[Violation]:
    """Credentials reach containers only through Secrets: no plain `value` for them, nor a URL with a
    password in it."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    found = []
    for c in containers(pod):
        for name, e in _env(c).items():
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if name in SECRET_ENV and not ref:
                found.append(Violation("secret-env", subject(obj), f"container {c.get('name')}: {name} must come "
                                                                    "from a Secret (valueFrom.secretKeyRef)"))
            elif isinstance(e.get("value"), str) and _URL_CREDENTIALS.search(e["value"]):
                found.append(Violation("secret-env", subject(obj), f"container {c.get('name')}: {name} holds a "
                                                                    "URL with a password; use a secretKeyRef"))
    return found


def pinned(image: str) -> bool:
    return bool(_PINNED.search(image))


def images_pinned(obj: Mapping[str, Any]) -> list[Violation]:
    """Every container image is named by digest, so what runs is what was tested and signed."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    return [Violation("images-pinned", subject(obj), f"container {c.get('name')}: image is not pinned by "
                                                     "digest (REPOSITORY@sha256:...)")
            for c in containers(pod) if not pinned(str(c.get("image", "")))]


def pod_security(obj: Mapping[str, Any]) -> list[Violation]:
    """No privileged container, no privilege escalation, and every container runs as non-root."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    pod_ctx = pod.get("securityContext") or {}
    found = []
    for c in containers(pod):
        ctx = c.get("securityContext") or {}
        name = c.get("name")
        if ctx.get("privileged") is True:
            found.append(Violation("pod-security", subject(obj), f"container {name} is privileged"))
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(Violation("pod-security", subject(obj),
                                   f"container {name}: allowPrivilegeEscalation must be false"))
        if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
            found.append(Violation("pod-security", subject(obj), f"container {name}: runAsNonRoot is not set "
                                                                 "(on the container or the pod)"))
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            found.append(Violation("pod-security", subject(obj), f"container {name} runs as uid 0"))
    return found


def registry_auth(obj: Mapping[str, Any]) -> list[Violation]:
    """The registry workload requires htpasswd authentication, its password file from a Secret."""
    pod = pod_spec(obj)
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if pod is None or labels.get("app.kubernetes.io/component") != "registry":
        return []
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    found = []
    for c in pod.get("containers") or []:
        env = {k: e.get("value") for k, e in _env(c).items()}
        path = env.get("REGISTRY_AUTH_HTPASSWD_PATH") or ""
        if env.get("REGISTRY_AUTH") != "htpasswd" or not path:
            found.append(Violation("registry-auth", subject(obj), f"container {c.get('name')}: REGISTRY_AUTH must "
                                                                  "be htpasswd with REGISTRY_AUTH_HTPASSWD_PATH"))
            continue
        mount = next((m for m in c.get("volumeMounts") or []
                      if path.startswith(m.get("mountPath", "").rstrip("/") + "/")), None)
        if mount is None or "secret" not in volumes.get(mount.get("name"), {}):
            found.append(Violation("registry-auth", subject(obj), f"container {c.get('name')}: the htpasswd file "
                                                                  "must come from a mounted Secret"))
    return found


def edge_ingress(objects: Iterable[Mapping[str, Any]], ops_service: str) -> list[Violation]:
    """Some Ingress routes /edge to the Ops service, on a host its TLS section covers."""
    for ing in objects:
        if ing.get("kind") != "Ingress":
            continue
        spec = ing.get("spec") or {}
        tls_hosts = {h for t in spec.get("tls") or [] if t.get("secretName") for h in t.get("hosts") or []}
        for rule in spec.get("rules") or []:
            for p in (rule.get("http") or {}).get("paths") or []:
                backend = ((p.get("backend") or {}).get("service") or {}).get("name")
                prefix = p.get("pathType") in ("Prefix", "ImplementationSpecific")
                if (prefix and p.get("path", "").rstrip("/") == EDGE_PATH and backend == ops_service
                        and rule.get("host") in tls_hosts):
                    return []
    return [Violation("edge-ingress", f"Service/{ops_service}",
                      f"no Ingress routes {EDGE_PATH} to it on a host with TLS")]


def _scale(deployment: Mapping[str, Any], objects: list[Mapping[str, Any]]) -> int:
    """The most replicas a Deployment can run: its own count, or what an autoscaler aimed at it may reach."""
    name = (deployment.get("metadata") or {}).get("name")
    most = int((deployment.get("spec") or {}).get("replicas", 1))
    for hpa in objects:
        spec = hpa.get("spec") or {}
        target = spec.get("scaleTargetRef") or {}
        if hpa.get("kind") == "HorizontalPodAutoscaler" and target.get("kind") == "Deployment" and \
                target.get("name") == name:
            most = max(most, int(spec.get("maxReplicas", 1)))
    return most


def ops_replicas(objects: Iterable[Mapping[str, Any]]) -> list[Violation]:
    """Ops with more than one replica shares a database that is not SQLite (nor any ReadWriteOnce claim), and a
    PodDisruptionBudget keeps some of its pods up through a drain."""
    objects = list(objects)
    found = []
    for dep in objects:
        labels = (dep.get("metadata") or {}).get("labels") or {}
        if dep.get("kind") != "Deployment" or labels.get("app.kubernetes.io/component") != "ops" or \
                _scale(dep, objects) < 2:
            continue
        pod = pod_spec(dep) or {}
        pod_labels = (((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
        for c in pod.get("containers") or []:
            database = _env(c).get(envvars.OPS_DATABASE) or {}
            if str(database.get("value", "")).startswith("sqlite:"):
                found.append(Violation("ops-replicas", subject(dep), f"container {c.get('name')}: replicas share "
                                       f"one database; {envvars.OPS_DATABASE} must be PostgreSQL, not SQLite"))
        if any("persistentVolumeClaim" in v for v in pod.get("volumes") or []):
            found.append(Violation("ops-replicas", subject(dep), "replicas cannot share a ReadWriteOnce claim"))
        if not any(p.get("kind") == "PodDisruptionBudget" and
                   (p.get("metadata") or {}).get("namespace") == (dep.get("metadata") or {}).get("namespace") and
                   ((p.get("spec") or {}).get("selector") or {}).get("matchLabels", {None: None}).items()
                   <= pod_labels.items() for p in objects):
            found.append(Violation("ops-replicas", subject(dep), "has more than one replica but no "
                                                                 "PodDisruptionBudget selects its pods"))
    return found


def unique_edge_names(names: Iterable[str]) -> list[Violation]:
    """Ops keys edges by name: two edges with one name would share (and break) one enrollment."""
    seen: set[str] = set()
    found = []
    for name in names:
        if name in seen:
            found.append(Violation("unique-edge-names", f"edge/{name}", "the name is used more than once"))
        seen.add(name)
    return found


def kubernetes_rules(obj: Mapping[str, Any]) -> list[Violation]:
    """Every per-object rule that needs nothing but the object."""
    return [*persist_for_bundle(obj), *secret_env(obj), *images_pinned(obj), *pod_security(obj),
            *registry_auth(obj)]


# ---------------------------------------------------------------- Pulumi resources


def release_values(name: str, values: Mapping[str, Any]) -> list[Violation]:
    """A Helm Release names Secrets and claims but holds no credential, and pins its engine image."""
    found = []
    for path in SECRET_VALUES:
        node: Any = values
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node:
            found.append(Violation("release-values", f"Release/{name}", f"values.{'.'.join(path)} is set; "
                                   "put it in a Secret and name that (existingSecret, existingEdgeBundleSecret)"))
    digest = str(((values.get("image") or {}).get("digest")) or "")
    if not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
        found.append(Violation("images-pinned", f"Release/{name}", "values.image.digest is not a sha256 digest"))
    engine = values.get("engine") or {}
    if not (engine.get("cpus") and engine.get("memory")):
        found.append(Violation("engine-limits", f"Release/{name}", "values.engine must give the publish's cpus "
                                                                   "and memory (the chart's defaults are not it)"))
    return found


def docker_engine(name: str, inputs: Mapping[str, Any], engine: EngineConfig | None) -> list[Violation]:
    """A Docker engine container: unprivileged, limited to its engine config, /persist on a volume when it
    has an EDGE_BUNDLE. Without `engine`, the limits are checked against its own CONFIG_CPUS."""
    where = f"Container/{name}"
    env = dict(e.split("=", 1) for e in inputs.get("envs") or [] if "=" in e)
    found = []
    if inputs.get("privileged") is True:
        found.append(Violation("pod-security", where, "the container is privileged"))
    cpus = inputs.get("cpus")
    expected_cpus = engine.cpus if engine is not None else env.get(envvars.CONFIG_CPUS)
    if cpus is None or expected_cpus is None or cpu_millis(cpus) != cpu_millis(expected_cpus):
        found.append(Violation("engine-limits", where, "cpus is not the publish's engine cpus"))
    memory = inputs.get("memory")
    if not memory or (engine is not None and int(memory) * 2**20 != quantity.memory_bytes(engine.memory)):
        found.append(Violation("engine-limits", where, "memory is not the publish's engine memory"))
    if envvars.EDGE_BUNDLE in env:
        persist = [v for v in inputs.get("volumes") or [] if v.get("containerPath", "").rstrip("/") == PERSIST]
        if not persist or not (persist[0].get("volumeName") or persist[0].get("hostPath")):
            found.append(Violation("persist-for-bundle", where, f"{envvars.EDGE_BUNDLE} is set but nothing is "
                                                                f"mounted at {PERSIST}"))
    return found


def _credential_paths(inputs: Mapping[str, Any]) -> Iterator[tuple]:
    """Paths of the inputs that hold a credential, by field name or environment variable name."""
    def walk(value: Any, path: tuple) -> Iterator[tuple]:
        if path and isinstance(path[-1], str) and path[-1].lower() in SECRET_FIELDS and value not in (None, "", {}):
            yield path
            return
        if isinstance(value, Mapping):
            if value.get("name") in SECRET_ENV and "value" in value:
                yield (*path, "value")
            for k, v in value.items():
                yield from walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                if isinstance(v, str) and v.split("=", 1)[0] in SECRET_ENV and "=" in v:
                    yield (*path, i)
                else:
                    yield from walk(v, (*path, i))
    if inputs.get("kind") == "Secret":
        for key in ("data", "stringData"):
            if inputs.get(key):
                yield (key,)
    yield from walk(inputs, ())


def secrets_are_secret(resource: str, inputs: Mapping[str, Any], secret_paths: Iterable[tuple]) -> list[Violation]:
    """Every credential among a resource's inputs is a Pulumi secret: encrypted in the state, masked in
    previews. `secret_paths` are the input paths Pulumi marks secret."""
    marked = list(secret_paths)
    return [Violation("pulumi-secrets", resource, f"{'.'.join(map(str, path))} holds a credential but is not a "
                                                  "Pulumi secret")
            for path in dict.fromkeys(_credential_paths(inputs)) if not any(path[:len(m)] == m for m in marked)]
