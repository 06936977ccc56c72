"""EdgeSite: one edge location on Kubernetes, running its publish's Helm chart.

A restricted namespace holds a claim for /persist, a Secret with EDGE_BUNDLE, a Secret with the registry
credentials the engine pulls the pipeline with, a pull Secret for the engine image, and a Helm Release of
oci://HOST/NS/charts/<pipeline> at version 0.0.1-<pipeline version> whose values name those objects
(k8s_args.engine_release_values): no credential is ever a Helm value, so none is in the Release's state.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra import k8s_args
from infra.edge import EdgeArgs
from infra.namespace import Namespace, NamespaceArgs
from infra.ops_edge import edge_bundle

COMPONENT = "engine"
# Helm rolls an install back unless the engine is ready within this: pulling a large pipeline takes minutes.
RELEASE_TIMEOUT_S = 900


@dataclass(frozen=True)
class EdgeSiteArgs:
    edge: EdgeArgs
    namespace: str
    chart: str                                   # oci://HOST/NS/charts/<pipeline>
    chart_version: str                           # 0.0.1-<pipeline version>
    storage_size: str
    storage_class: str


class EdgeSite(pulumi.ComponentResource):
    namespace: str
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: EdgeSiteArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("joey:infra:EdgeSite", name, None, opts)
        edge = args.edge
        ns = args.namespace
        self.namespace = ns
        obj_labels = k8s_args.labels(COMPONENT, edge.edge_name)
        namespace = Namespace(f"{name}-ns", NamespaceArgs(name=ns, component="edge"),
                              pulumi.ResourceOptions(parent=self))
        inside = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        claim = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-persist",
            metadata=k8s_args.metadata(f"{edge.edge_name}-persist", ns, obj_labels, k8s_args.PVC_ANNOTATIONS),
            spec=k8s_args.pvc_spec(args.storage_size, args.storage_class),
            opts=inside)
        password = pulumi.Output.secret(edge.registry_password)
        oci = k8s.core.v1.Secret(
            f"{name}-oci",
            metadata=k8s_args.metadata(f"{edge.edge_name}-oci", ns, obj_labels),
            type="Opaque",
            string_data={k8s_args.OCI_USERNAME_KEY: edge.registry_username, k8s_args.OCI_PASSWORD_KEY: password},
            opts=inside)
        pull = k8s.core.v1.Secret(
            f"{name}-pull",
            metadata=k8s_args.metadata(f"{edge.edge_name}-pull", ns, obj_labels),
            type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": pulumi.Output.secret(password.apply(
                lambda pw: k8s_args.docker_config_json(edge.registry_host, edge.registry_username, pw)))},
            opts=inside)
        depends: list[pulumi.Resource] = [claim, oci, pull]
        bundle = edge_bundle(f"{name}-enrollment", edge.bundle,
                             pulumi.ResourceOptions(parent=self, depends_on=list(edge.after)))
        bundle_secret = None
        if bundle is not None:
            bundle_secret = f"{edge.edge_name}-edge-bundle"
            depends.append(k8s.core.v1.Secret(
                f"{name}-bundle",
                metadata=k8s_args.metadata(bundle_secret, ns, obj_labels),
                type="Opaque",
                string_data={k8s_args.EDGE_BUNDLE_KEY: bundle},
                opts=inside))
        # A digest of 256-bit random tokens reveals nothing of them, so it may be plain.
        bundle_sha256 = None if bundle is None else pulumi.Output.unsecret(
            bundle.apply(lambda b: hashlib.sha256(b.encode()).hexdigest()))
        values = pulumi.Output.all(edge.image, bundle_sha256).apply(lambda a: k8s_args.engine_release_values(
            engine=edge.engine, pipeline_url=edge.pipeline_url, image=a[0], registry_host=edge.registry_host,
            oci_secret=f"{edge.edge_name}-oci", pull_secret=f"{edge.edge_name}-pull",
            claim=f"{edge.edge_name}-persist", bundle_secret=bundle_secret, bundle_sha256=a[1],
            verify_key=edge.verify_key))
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=edge.edge_name,
                namespace=ns,
                chart=args.chart,
                version=args.chart_version,
                # The chart is pulled from the same registry as the pipeline, with the same credentials.
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(username=edge.registry_username, password=password),
                values=values,
                atomic=True,
                timeout=RELEASE_TIMEOUT_S,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends))
        self.register_outputs({"namespace": ns, "release": self.release.name, "chart": args.chart,
                               "version": args.chart_version})
