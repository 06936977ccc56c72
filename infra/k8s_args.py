"""The Kubernetes objects' specs and the engine chart's values, as pure functions of plain settings.

Everything here returns the objects in Kubernetes' own (camelCase) form, the form `kubectl` and Helm
render, so the same policies (policies.py) check what the components create and what the chart renders,
and tests call these functions directly. Values may be Pulumi Outputs where a caller passes one in; nothing
here creates a resource or reads configuration.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from joey import envvars, quantity
from joey.pipeline_config import EngineConfig

REGISTRY_PORT = 5000
OPS_PORT = 8090
HTTP_PORT = 80
REGISTRY_DATA = "/var/lib/registry"
REGISTRY_AUTH_DIR = "/auth"
OPS_DATA = "/data"
PERSIST = "/persist"
# Keys of the Secrets the components create; the chart's existing-Secret contract fixes the engine's.
HTPASSWD_KEY = "htpasswd"
REGISTRY_HTTP_SECRET = "REGISTRY_HTTP_SECRET"
EDGE_BUNDLE_KEY = envvars.EDGE_BUNDLE
OCI_USERNAME_KEY = envvars.OCI_USERNAME
OCI_PASSWORD_KEY = envvars.OCI_PASSWORD

# The engine image's user (engine/Dockerfile); the registry and Ops run as the same unprivileged uid.
RUN_AS = 10001
POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
    "privileged": False, "capabilities": {"drop": ["ALL"]},
}


def labels(component: str, instance: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": f"joey-{component}",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "joey",
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector(obj_labels: dict[str, str]) -> dict[str, str]:
    return {k: obj_labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}


def metadata(name: str, namespace: str | None, obj_labels: dict[str, str],
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": obj_labels}
    if namespace is not None:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = annotations
    return meta


def split_image(ref: str) -> tuple[str, str]:
    """(repository, sha256:digest) of REPOSITORY@sha256:DIGEST."""
    repository, _, digest = ref.partition("@")
    if not digest.startswith("sha256:"):
        raise ValueError(f"{ref!r} is not pinned by digest")
    return repository, digest


# A claim of a WaitForFirstConsumer class binds only once its pod is scheduled, and the pod is created after
# the claim: Pulumi must not wait for the claim to bind.
PVC_ANNOTATIONS = {"pulumi.com/skipAwait": "true"}


def pvc_spec(size: str, storage_class: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return spec


def service_spec(obj_labels: dict[str, str], target_port: int) -> dict[str, Any]:
    return {
        "type": "ClusterIP",
        "selector": selector(obj_labels),
        "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": target_port, "protocol": "TCP"}],
    }


def _secret_env(name: str, secret: str, key: str | None = None) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key or name}}}


def _pod(obj_labels: dict[str, str], container: dict[str, Any], volumes: list[dict[str, Any]],
         scaled: bool = False) -> dict[str, Any]:
    """A Deployment spec. One replica, Recreate, for a pod that owns a ReadWriteOnce volume; `scaled`: the
    replica count left to a HorizontalPodAutoscaler (a count here would reset it at every `pulumi up`), and
    rolled one new pod at a time with none taken away first."""
    count: dict[str, Any] = ({"strategy": {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}} if scaled
                             else {"replicas": 1, "strategy": {"type": "Recreate"}})
    return {
        **count,
        "selector": {"matchLabels": selector(obj_labels)},
        "template": {
            "metadata": {"labels": obj_labels},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": POD_SECURITY,
                "containers": [{**container, "securityContext": CONTAINER_SECURITY}],
                "volumes": [*volumes, {"name": "tmp", "emptyDir": {}}],
            },
        },
    }


def registry_deployment_spec(*, image: str, obj_labels: dict[str, str], auth_secret: str,
                             claim: str) -> dict[str, Any]:
    """CNCF distribution with htpasswd (bcrypt) auth, its blobs on `claim`.

    distribution reads REGISTRY_* variables over its built-in config.yml; REGISTRY_HTTP_SECRET signs upload
    state, so it comes from the auth Secret rather than being made up at each start.
    """
    env = [
        {"name": "REGISTRY_HTTP_ADDR", "value": f":{REGISTRY_PORT}"},
        {"name": "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "value": REGISTRY_DATA},
        {"name": "REGISTRY_STORAGE_DELETE_ENABLED", "value": "true"},
        {"name": "REGISTRY_AUTH", "value": "htpasswd"},
        {"name": "REGISTRY_AUTH_HTPASSWD_REALM", "value": "joey"},
        {"name": "REGISTRY_AUTH_HTPASSWD_PATH", "value": f"{REGISTRY_AUTH_DIR}/{HTPASSWD_KEY}"},
        _secret_env(REGISTRY_HTTP_SECRET, auth_secret),
    ]
    # /v2/ answers 401 without credentials, so the probes only check that the port is open.
    probe = {"tcpSocket": {"port": "http"}, "periodSeconds": 10}
    container = {
        "name": "registry",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": REGISTRY_PORT, "protocol": "TCP"}],
        "env": env,
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 6},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "volumeMounts": [
            {"name": "data", "mountPath": REGISTRY_DATA},
            {"name": "auth", "mountPath": REGISTRY_AUTH_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": claim}},
        {"name": "auth", "secret": {"secretName": auth_secret, "items": [{"key": HTPASSWD_KEY, "path": HTPASSWD_KEY}]}},
    ]
    return _pod(obj_labels, container, volumes)


@dataclass(frozen=True)
class ObjectStoreEnv:
    """Where Ops rolls logs into; the access key pair is in the Ops Secret."""

    endpoint: str
    bucket: str
    prefix: str


def ops_deployment_spec(*, image: str, obj_labels: dict[str, str], secret: str, public_url: str,
                        database: tuple[str, str] | None, claim: str | None, scaled: bool = False,
                        object_store: ObjectStoreEnv | None = None) -> dict[str, Any]:
    """`joey-ops` with its admin token from `secret`, its PostgreSQL URL from `database` (Secret, key), or
    SQLite on `claim`; `scaled`: replicas under an autoscaler. With `object_store`, its access key pair comes
    from `secret` too."""
    if (database is None) == (claim is None):
        raise ValueError("Ops keeps its data either in PostgreSQL (database URL in a Secret) or on a claim")
    if scaled and claim is not None:
        raise ValueError("replicas of Ops share one database: SQLite on a ReadWriteOnce claim serves one")
    db_env = (_secret_env(envvars.OPS_DATABASE, *database) if database is not None
              else {"name": envvars.OPS_DATABASE, "value": f"sqlite:///{OPS_DATA}/joey-ops.db"})
    store_env = [] if object_store is None else [
        {"name": envvars.OPS_S3_ENDPOINT, "value": object_store.endpoint},
        {"name": envvars.OPS_S3_BUCKET, "value": object_store.bucket},
        {"name": envvars.OPS_S3_PREFIX, "value": object_store.prefix},
        _secret_env(envvars.OPS_S3_ACCESS_KEY_ID, secret),
        _secret_env(envvars.OPS_S3_SECRET_ACCESS_KEY, secret),
    ]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes = []
    if claim is not None:
        mounts.append({"name": "data", "mountPath": OPS_DATA})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": claim}})
    container = {
        "name": "ops",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["joey-ops"],
        "args": ["--host", "0.0.0.0", "--port", str(OPS_PORT)],
        "ports": [{"name": "http", "containerPort": OPS_PORT, "protocol": "TCP"}],
        "env": [
            _secret_env(envvars.OPS_TOKEN, secret),
            db_env,
            {"name": envvars.OPS_PUBLIC_URL, "value": public_url},
            *store_env,
        ],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10,
                          "failureThreshold": 6},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "volumeMounts": mounts,
    }
    return _pod(obj_labels, container, volumes, scaled)


def pdb_spec(obj_labels: dict[str, str]) -> dict[str, Any]:
    """At most one of the pods away at a time for a voluntary disruption (a node drained, an upgrade)."""
    return {"maxUnavailable": 1, "selector": {"matchLabels": selector(obj_labels)}}


def hpa_spec(deployment: str, min_replicas: int, max_replicas: int, cpu_percent: int = 70) -> dict[str, Any]:
    """autoscaling/v2: between min and max replicas of `deployment`, at `cpu_percent` of the CPU requested."""
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}],
    }


# CloudNativePG (https://cloudnative-pg.io), the operator that runs the PostgreSQL of scaled Ops: its Cluster
# bootstraps database and owner `joey`, and writes their connection URL into the Secret NAME-app, key `uri`.
CNPG_API_VERSION = "postgresql.cnpg.io/v1"
CNPG_DATABASE = "joey"
CNPG_URI_KEY = "uri"


def cnpg_app_secret(cluster: str) -> str:
    return f"{cluster}-app"


def cnpg_cluster_spec(*, instances: int, storage_size: str, storage_class: str) -> dict[str, Any]:
    storage: dict[str, Any] = {"size": storage_size}
    if storage_class:
        storage["storageClass"] = storage_class
    return {
        "instances": instances,
        "storage": storage,
        "bootstrap": {"initdb": {"database": CNPG_DATABASE, "owner": CNPG_DATABASE}},
        "enableSuperuserAccess": False,
    }


def ingress_spec(*, host: str, tls_secret: str, ingress_class: str, service: str,
                 paths: tuple[str, ...]) -> dict[str, Any]:
    """HTTPS for `host`, each path prefix to `service` port 80."""
    spec: dict[str, Any] = {
        "tls": [{"hosts": [host], "secretName": tls_secret}],
        "rules": [{"host": host, "http": {"paths": [
            {"path": path, "pathType": "Prefix",
             "backend": {"service": {"name": service, "port": {"number": HTTP_PORT}}}}
            for path in paths]}}],
    }
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    return spec


# Helm's convention for "restart the pod when this content changes" (the chart's own is checksum/secrets).
BUNDLE_CHECKSUM = "checksum/edge-bundle"

# ingress-nginx buffers request bodies up to 1 MiB by default; image and pipeline layers are far larger.
REGISTRY_INGRESS_ANNOTATIONS = {"nginx.ingress.kubernetes.io/proxy-body-size": "0"}


def engine_release_values(*, engine: EngineConfig, pipeline_url: str, image: str, registry_host: str,
                          oci_secret: str, pull_secret: str, claim: str, bundle_secret: str | None,
                          bundle_sha256: str | None, verify_key: str = "") -> dict[str, Any]:
    """Values for the publish's chart: only Secret and claim names, never a credential.

    The published chart already defaults pipelineUrl, image and engine to the publish's; they are set again
    so that an install always matches the stack's view of the publish, whichever chart defaults it has.
    `bundle_sha256` goes into a pod annotation: a new bundle (the edge re-added to Ops) then restarts the
    engine, which reads EDGE_BUNDLE only at start and must trade the new join token.
    """
    repository, digest = split_image(image)
    values: dict[str, Any] = {
        "image": {"repository": repository, "digest": digest},
        "imagePullSecrets": [{"name": pull_secret}],
        "pipelineUrl": pipeline_url,
        "ociRegistry": {"registry": registry_host, "existingSecret": oci_secret},
        "engine": {"cpus": quantity.cpus_value(engine.cpus), "memory": engine.memory, "gpus": engine.gpus, "arch": engine.arch,
                   "accel": engine.accel},
        "persistence": {"enabled": True, "existingClaim": claim},
    }
    if verify_key:
        values["verifyKey"] = verify_key
    if bundle_secret is not None:
        values["existingEdgeBundleSecret"] = bundle_secret
        values["podAnnotations"] = {BUNDLE_CHECKSUM: bundle_sha256}
    return values


def docker_config_json(host: str, username: str, password: str) -> str:
    """A kubernetes.io/dockerconfigjson document: the kubelet's credentials for pulling from `host`."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"username": username, "password": password, "auth": auth}}},
                      sort_keys=True)


def engine_container_env(*, engine: EngineConfig, pipeline_url: str, registry_host: str,
                         verify_key: str = "") -> dict[str, str]:
    """The engine's plain settings (the seeds' docker run -e ...); credentials are added by the caller."""
    env = {
        envvars.PIPELINE_URL: pipeline_url,
        envvars.OCI_REGISTRY: registry_host,
        envvars.CONFIG_CPUS: quantity.format_cpus(engine.cpus),
        envvars.PERSIST_DIR: PERSIST,
    }
    if verify_key:
        env[envvars.VERIFY_KEY] = verify_key
    return env

