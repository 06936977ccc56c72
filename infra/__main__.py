"""The Pulumi program (Pulumi.yaml: `main: infra/`): the stack's settings in, Joey's components out.

    pulumi up -s dev              # registry, Ops and two edges in one cluster
    pulumi up -s ops              # registry and Ops only
    pulumi up -s edge-store-042   # one edge site against a remote Ops and registry

Everything the stacks can set is declared, with its default, in Pulumi.yaml; docs/infra.md explains them.
"""
from __future__ import annotations

from pathlib import Path

import pulumi

from infra import settings
from infra.docker_edge import DockerEdge, DockerEdgeArgs
from infra.edge import EdgeArgs
from infra.edge_site import EdgeSite, EdgeSiteArgs
from infra.engine_image import EngineImage, EngineImageArgs
from infra.k8s_args import ObjectStoreEnv
from infra.namespace import Namespace, NamespaceArgs
from infra.ops_center import OpsCenter, OpsCenterArgs
from infra.ops_edge import BundleSource, OpsEdgeArgs
from infra.registry import Registry, RegistryArgs
from infra.settings import secret

REPO = Path(__file__).resolve().parents[1]


def program() -> None:
    cfg = settings.from_pulumi()

    control: list[pulumi.Resource] = []
    if "cluster" in (cfg.registry_mode, cfg.ops_mode):
        control.append(Namespace("joey", NamespaceArgs(name=cfg.namespace, component="control-plane")))

    registry = Registry("registry", RegistryArgs(
        mode=cfg.registry_mode, host=cfg.registry_host, username=cfg.registry_username,
        password=secret(cfg.registry_password) if cfg.registry_password else None,
        namespace=cfg.namespace, image=cfg.registry_image, storage_size=cfg.registry_storage_size,
        storage_class=cfg.storage_class, ingress=cfg.registry_ingress, ingress_class=cfg.ingress_class_name,
        tls_secret=cfg.registry_tls_secret,
    ), pulumi.ResourceOptions(depends_on=control))

    engine_image: pulumi.Input[str] | None = cfg.engine_image
    if cfg.build_engine_image:
        engine_image = EngineImage("engine-image", EngineImageArgs(
            repository=f"{cfg.registry_host}/{cfg.registry_namespace}/{cfg.engine_image_repository}",
            tag=cfg.engine_image_tag, context=REPO / cfg.engine_build_context, base_image=cfg.engine_base_image,
            platform=cfg.engine_platform, registry_host=registry.host, registry_username=registry.username,
            registry_password=registry.password,
        ), pulumi.ResourceOptions(depends_on=[registry])).ref

    ops_token = secret(cfg.ops_token) if cfg.ops_token else None
    ops: list[pulumi.Resource] = []
    if cfg.ops_mode == "cluster":
        store, creds = cfg.ops_object_store, cfg.ops_object_store_credentials
        center = OpsCenter("ops", OpsCenterArgs(
            namespace=cfg.namespace, image=cfg.ops_image or engine_image, host=cfg.ops_host,
            tls_secret=cfg.ops_tls_secret, ingress_class=cfg.ingress_class_name, token=ops_token,
            database_url=secret(cfg.ops_database_url) if cfg.ops_database_url else None,
            storage_size=cfg.ops_storage_size, storage_class=cfg.storage_class, replicas=cfg.ops_replicas,
            max_replicas=cfg.ops_max_replicas, postgres=cfg.ops_postgres,
            object_store=None if store is None else ObjectStoreEnv(store.endpoint, store.bucket, store.prefix),
            object_store_credentials=None if creds is None else (secret(creds.access_key_id),
                                                                 secret(creds.secret_access_key)),
        ), pulumi.ResourceOptions(depends_on=control))
        ops_token = center.token
        ops.append(center)
        pulumi.export("opsToken", center.token)
    if cfg.ops_mode != "none":
        pulumi.export("opsUrl", cfg.ops_endpoint)

    edges: dict[str, dict] = {}
    for edge in cfg.edges:
        publish = cfg.publishes[edge.publish]
        bundle: BundleSource = None
        if (given := cfg.edge_bundle(edge.name)) is not None:
            bundle = secret(given)
        elif cfg.enrolls_through_ops(edge):
            bundle = OpsEdgeArgs(ops_url=cfg.ops_endpoint, token=ops_token, publish_id=publish.id,
                                 edge_name=edge.name, tags=edge.tags)
        runs = EdgeArgs(
            edge_name=edge.name, pipeline_url=publish.pipeline_url(cfg.registry_host, cfg.registry_namespace),
            engine=publish.engine_config, image=publish.engine_image or engine_image,
            registry_host=registry.host, registry_username=registry.username,
            registry_password=registry.password, bundle=bundle, after=ops,
            verify_key=cfg.verify_key)
        if edge.kind == "docker":
            site = DockerEdge(edge.name, DockerEdgeArgs(runs, docker_host=edge.docker_host, port=edge.port,
                                                        persist_dir=edge.persist_dir))
            edges[edge.name] = {"kind": "docker", "container": site.container.name, "port": edge.port}
        else:
            EdgeSite(edge.name, EdgeSiteArgs(
                runs, namespace=edge.k8s_namespace,
                chart=publish.chart_url(cfg.registry_host, cfg.registry_namespace),
                chart_version=publish.chart_version, storage_size=edge.storage_size,
                storage_class=cfg.storage_class))
            edges[edge.name] = {"kind": "kubernetes", "namespace": edge.k8s_namespace,
                                "chart": publish.chart_url(cfg.registry_host, cfg.registry_namespace),
                                "version": publish.chart_version}

    pulumi.export("registryHost", registry.host)
    pulumi.export("registryUsername", registry.username)
    pulumi.export("registryPassword", registry.password)
    if engine_image is not None:
        pulumi.export("engineImage", engine_image)
    pulumi.export("edges", edges)


if __name__ == "__main__":
    program()
