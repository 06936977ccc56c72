"""Registry: the OCI registry pipelines, charts and engine images are pushed to and edges pull from.

In `cluster` mode it is CNCF distribution on Kubernetes behind htpasswd auth; its password is generated
(pulumi_random), and the provider bcrypts it, so the hash stays stable from one `pulumi up` to the next.
In `external` mode it creates nothing and hands on the host and credentials it was given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import k8s_args

COMPONENT = "registry"


@dataclass(frozen=True)
class RegistryArgs:
    mode: Literal["cluster", "external"]
    host: str                                    # HOST[:PORT] clients use: the ingress host in cluster mode
    username: str
    password: pulumi.Output[str] | None          # external mode only; a secret
    namespace: pulumi.Input[str] | None = None   # cluster mode: where it runs
    image: str = ""                              # cluster mode: distribution, pinned by digest
    storage_size: str = "20Gi"
    storage_class: str = ""
    ingress: bool = True
    ingress_class: str = ""
    tls_secret: str = ""


class Registry(pulumi.ComponentResource):
    host: str
    username: str
    password: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("joey:infra:Registry", name, None, opts)
        self.host, self.username = args.host, args.username
        if args.mode == "external":
            if args.password is None:
                raise ValueError("an external registry needs its password")
            self.password = pulumi.Output.secret(args.password)
        else:
            self.password = self._in_cluster(name, args)
        self.register_outputs({"host": self.host, "username": self.username, "password": self.password})

    def _in_cluster(self, name: str, args: RegistryArgs) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        obj_labels = k8s_args.labels(COMPONENT, name)
        password = random.RandomPassword(f"{name}-password", length=32, special=False, opts=child)
        http_secret = random.RandomPassword(f"{name}-http-secret", length=32, special=False, opts=child)
        auth = k8s.core.v1.Secret(
            f"{name}-auth",
            metadata=k8s_args.metadata(f"{name}-auth", args.namespace, obj_labels),
            type="Opaque",
            string_data={
                k8s_args.HTPASSWD_KEY: pulumi.Output.secret(
                    pulumi.Output.concat(args.username, ":", password.bcrypt_hash)),
                k8s_args.REGISTRY_HTTP_SECRET: pulumi.Output.secret(http_secret.result),
            },
            opts=child)
        claim = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-data",
            metadata=k8s_args.metadata(f"{name}-data", args.namespace, obj_labels, k8s_args.PVC_ANNOTATIONS),
            spec=k8s_args.pvc_spec(args.storage_size, args.storage_class),
            opts=child)
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=k8s_args.metadata(name, args.namespace, obj_labels),
            spec=k8s_args.registry_deployment_spec(image=args.image, obj_labels=obj_labels,
                                                   auth_secret=f"{name}-auth", claim=f"{name}-data"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[auth, claim]))
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=k8s_args.metadata(name, args.namespace, obj_labels),
            spec=k8s_args.service_spec(obj_labels, k8s_args.REGISTRY_PORT),
            opts=child)
        if args.ingress:
            k8s.networking.v1.Ingress(
                f"{name}-ingress",
                metadata=k8s_args.metadata(name, args.namespace, obj_labels,
                                           k8s_args.REGISTRY_INGRESS_ANNOTATIONS),
                spec=k8s_args.ingress_spec(host=args.host.split(":")[0], tls_secret=args.tls_secret,
                                           ingress_class=args.ingress_class, service=name, paths=("/",)),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[service]))
        return pulumi.Output.secret(password.result)
