"""OpsCenter: `joey-ops` on Kubernetes and the edge ingress, https://HOST/edge (and /v1/api) to it.

The admin token comes from the stack's secret setting or is generated. The database is a CloudNativePG Cluster
the program declares (the operator writes its URL into a Secret of its own), or PostgreSQL at a (secret)
connection string, else SQLite on a claim of its own. On PostgreSQL, Ops runs as replicas: a
HorizontalPodAutoscaler between `replicas` and `max_replicas`, a PodDisruptionBudget. With an object store, Ops
rolls logs into it; its access key pair rides in Ops' Secret. No secret reaches the pod but through a Secret.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import k8s_args
from infra.k8s_args import ObjectStoreEnv
from infra.settings import OpsPostgres
from joey import envvars

COMPONENT = "ops"
# Edges enroll and upload under /edge; packager and Pulumi call the admin API under /v1/api.
INGRESS_PATHS = ("/edge", "/v1/api")


@dataclass(frozen=True)
class OpsCenterArgs:
    namespace: pulumi.Input[str]
    image: pulumi.Input[str]                  # a Joey image with joey-ops, pinned by digest
    host: str                                 # public host of the edge ingress
    tls_secret: str
    ingress_class: str
    token: pulumi.Output[str] | None          # secret; None: generate one
    database_url: pulumi.Output[str] | None   # secret PostgreSQL URL; None: SQLite on a claim
    storage_size: str
    storage_class: str
    replicas: int = 1
    max_replicas: int = 1
    postgres: OpsPostgres | None = None        # a CloudNativePG Cluster for Ops
    object_store: ObjectStoreEnv | None = None
    object_store_credentials: tuple[pulumi.Output[str], pulumi.Output[str]] | None = None   # secret key pair


class OpsCenter(pulumi.ComponentResource):
    url: str
    token: pulumi.Output[str]

    def __init__(self, name: str, args: OpsCenterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("joey:infra:OpsCenter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        obj_labels = k8s_args.labels(COMPONENT, name)
        self.url = f"https://{args.host}"
        if args.token is not None:
            self.token = pulumi.Output.secret(args.token)
        else:
            self.token = pulumi.Output.secret(
                random.RandomPassword(f"{name}-token", length=40, special=False, opts=child).result)
        data = {envvars.OPS_TOKEN: self.token}
        if args.database_url is not None:
            data[envvars.OPS_DATABASE] = pulumi.Output.secret(args.database_url)
        if args.object_store_credentials is not None:
            key_id, secret_key = args.object_store_credentials
            data[envvars.OPS_S3_ACCESS_KEY_ID] = pulumi.Output.secret(key_id)
            data[envvars.OPS_S3_SECRET_ACCESS_KEY] = pulumi.Output.secret(secret_key)
        secret = k8s.core.v1.Secret(
            f"{name}-secrets",
            metadata=k8s_args.metadata(f"{name}-secrets", args.namespace, obj_labels),
            type="Opaque", string_data=data, opts=child)
        depends: list[pulumi.Resource] = [secret]
        claim_name = None
        database = (f"{name}-secrets", envvars.OPS_DATABASE) if args.database_url is not None else None
        if args.postgres is not None:
            cluster = f"{name}-db"
            depends.append(k8s.apiextensions.CustomResource(
                cluster, api_version=k8s_args.CNPG_API_VERSION, kind="Cluster",
                metadata=k8s_args.metadata(cluster, args.namespace, k8s_args.labels("ops-db", name)),
                spec=k8s_args.cnpg_cluster_spec(instances=args.postgres.instances,
                                                storage_size=args.postgres.storage_size,
                                                storage_class=args.storage_class),
                opts=child))
            database = (k8s_args.cnpg_app_secret(cluster), k8s_args.CNPG_URI_KEY)
        if database is None:
            claim_name = f"{name}-data"
            depends.append(k8s.core.v1.PersistentVolumeClaim(
                f"{name}-data",
                metadata=k8s_args.metadata(claim_name, args.namespace, obj_labels, k8s_args.PVC_ANNOTATIONS),
                spec=k8s_args.pvc_spec(args.storage_size, args.storage_class),
                opts=child))
        spec = pulumi.Output.from_input(args.image).apply(lambda image: k8s_args.ops_deployment_spec(
            image=image, obj_labels=obj_labels, secret=f"{name}-secrets", public_url=self.url,
            database=database, claim=claim_name, scaled=args.replicas > 1, object_store=args.object_store))
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=k8s_args.metadata(name, args.namespace, obj_labels),
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends))
        if args.replicas > 1:
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb", metadata=k8s_args.metadata(name, args.namespace, obj_labels),
                spec=k8s_args.pdb_spec(obj_labels), opts=child)
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-hpa", metadata=k8s_args.metadata(name, args.namespace, obj_labels),
                spec=k8s_args.hpa_spec(name, args.replicas, args.max_replicas),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]))
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=k8s_args.metadata(name, args.namespace, obj_labels),
            spec=k8s_args.service_spec(obj_labels, k8s_args.OPS_PORT),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]))
        k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata=k8s_args.metadata(name, args.namespace, obj_labels),
            spec=k8s_args.ingress_spec(host=args.host, tls_secret=args.tls_secret, ingress_class=args.ingress_class,
                                       service=name, paths=INGRESS_PATHS),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[service]))
        self.register_outputs({"url": self.url, "token": self.token})
