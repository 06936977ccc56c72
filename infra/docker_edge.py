"""DockerEdge: one edge device without Kubernetes, running the engine as a Docker container.

The container is the seeds' `docker run` (001/004): PIPELINE_URL, OCI_USERNAME, OCI_PASSWORD, CONFIG_CPUS
and EDGE_BUNDLE in its environment, /persist on a volume (the enrollment credential outlives the container),
--cpus and --memory from the publish's engine config, restarted unless stopped. Docker has no secret
references for environment variables, so the two credentials travel as Pulumi secrets: encrypted in the
state and masked in every preview.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from infra import k8s_args
from infra.edge import EdgeArgs
from infra.ops_edge import edge_bundle
from joey import envvars, quantity
from joey.pipeline_config import EngineConfig

ENGINE_PORT = 8080
CONTAINER_PREFIX = "joey-"    # engine container joey-EDGE, volume joey-EDGE-persist


@dataclass(frozen=True)
class DockerEdgeArgs:
    edge: EdgeArgs
    docker_host: str                             # ssh://user@device, tcp://..., unix:///var/run/docker.sock
    port: int                                    # host port for the engine's 8080
    persist_dir: str | None                      # host directory for /persist; None: a named volume


def _memory_mb(memory: str) -> int:
    """The docker provider takes memory in MiB (docker run --memory=Nm)."""
    return max(1, quantity.memory_bytes(memory) // 2**20)


def container_limits(engine: EngineConfig) -> tuple[str, int]:
    """(cpus, memory in MiB) of `docker run --cpus --memory` for this engine config."""
    return quantity.format_cpus(engine.cpus), _memory_mb(engine.memory)


class DockerEdge(pulumi.ComponentResource):
    container: docker.Container

    def __init__(self, name: str, args: DockerEdgeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("joey:infra:DockerEdge", name, None, opts)
        edge = args.edge
        password = pulumi.Output.secret(edge.registry_password)
        provider = docker.Provider(
            f"{name}-docker",
            host=args.docker_host,
            registry_auth=[docker.ProviderRegistryAuthArgs(
                address=edge.registry_host, username=edge.registry_username, password=password)],
            opts=pulumi.ResourceOptions(parent=self))
        on_device = pulumi.ResourceOptions(parent=self, provider=provider)
        image = docker.RemoteImage(f"{name}-image", name=edge.image, keep_locally=True, opts=on_device)
        if args.persist_dir is None:
            volume = docker.Volume(f"{name}-persist", name=f"{CONTAINER_PREFIX}{edge.edge_name}-persist",
                                   opts=on_device)
            persist = docker.ContainerVolumeArgs(container_path=k8s_args.PERSIST, volume_name=volume.name)
        else:
            persist = docker.ContainerVolumeArgs(container_path=k8s_args.PERSIST, host_path=args.persist_dir)
        plain = k8s_args.engine_container_env(engine=edge.engine, pipeline_url=edge.pipeline_url,
                                              registry_host=edge.registry_host,
                                              verify_key=edge.verify_key)
        envs: list[pulumi.Input[str]] = [f"{k}={v}" for k, v in sorted(plain.items())]
        envs.append(f"{envvars.OCI_USERNAME}={edge.registry_username}")
        envs.append(pulumi.Output.secret(pulumi.Output.concat(f"{envvars.OCI_PASSWORD}=", password)))
        bundle = edge_bundle(f"{name}-enrollment", edge.bundle,
                             pulumi.ResourceOptions(parent=self, depends_on=list(edge.after)))
        if bundle is not None:
            envs.append(pulumi.Output.secret(pulumi.Output.concat(f"{envvars.EDGE_BUNDLE}=", bundle)))
        cpus, memory_mb = container_limits(edge.engine)
        self.container = docker.Container(
            f"{name}-engine",
            name=f"{CONTAINER_PREFIX}{edge.edge_name}",
            image=image.image_id,
            envs=envs,
            volumes=[persist],
            ports=[docker.ContainerPortArgs(internal=ENGINE_PORT, external=args.port)],
            restart="unless-stopped",
            cpus=cpus,
            memory=memory_mb,
            gpus="all" if edge.engine.gpus else None,   # as the packager's docker run command does
            privileged=False,
            must_run=True,
            opts=on_device)
        self.register_outputs({"container": self.container.name, "port": args.port})
