"""OpsCenter: `joey-ops` on Kubernetes and the edge ingress, https://HOST/edge (and /v1/api) to it.

The admin token comes from the stack's secret setting or is generated; the database is PostgreSQL when the
stack gives a (secret) connection string, else SQLite on a claim of its own. Both secrets reach the pod
only through a Secret, never through its spec.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from joey import envvars

from infra import k8s_args

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
        secret = k8s.core.v1.Secret(
            f"{name}-secrets",
            metadata=k8s_args.metadata(f"{name}-secrets", args.namespace, obj_labels),
            type="Opaque", string_data=data, opts=child)
        depends: list[pulumi.Resource] = [secret]
        claim_name = None
        if args.database_url is None:
            claim_name = f"{name}-data"
            depends.append(k8s.core.v1.PersistentVolumeClaim(
                f"{name}-data",
                metadata=k8s_args.metadata(claim_name, args.namespace, obj_labels, k8s_args.PVC_ANNOTATIONS),
                spec=k8s_args.pvc_spec(args.storage_size, args.storage_class),
                opts=child))
        spec = pulumi.Output.from_input(args.image).apply(lambda image: k8s_args.ops_deployment_spec(
            image=image, obj_labels=obj_labels, secret=f"{name}-secrets", public_url=self.url,
            database_in_secret=args.database_url is not None, claim=claim_name))
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=k8s_args.metadata(name, args.namespace, obj_labels),
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends))
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
