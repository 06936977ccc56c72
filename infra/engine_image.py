"""EngineImage: build engine/Dockerfile with Docker and push it to the stack's registry.

The build context is the one `python -m packager.image build --context DIR` prepares (a wheelhouse in deps/,
the joey wheel in app/: the Dockerfile installs nothing from an index). The output is the pushed image's
repository digest, REPOSITORY@sha256:..., which is how every workload of the stack names it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

DOCKERFILE = Path(__file__).resolve().parents[1] / "engine" / "Dockerfile"


@dataclass(frozen=True)
class EngineImageArgs:
    repository: str                       # HOST/NS/engines/joey-engine
    tag: str
    context: Path                         # prepared by `python -m packager.image build --context`
    base_image: str                       # BASE_IMAGE build argument; "" keeps the Dockerfile's default
    platform: str
    registry_host: str
    registry_username: str
    registry_password: pulumi.Output[str]  # secret


class EngineImage(pulumi.ComponentResource):
    ref: pulumi.Output[str]

    def __init__(self, name: str, args: EngineImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("joey:infra:EngineImage", name, None, opts)
        build_args = {"BASE_IMAGE": args.base_image} if args.base_image else {}
        image = docker.Image(
            f"{name}-image",
            image_name=f"{args.repository}:{args.tag}",
            build=docker.DockerBuildArgs(context=str(args.context), dockerfile=str(DOCKERFILE), args=build_args,
                                         platform=args.platform),
            registry=docker.RegistryArgs(server=args.registry_host, username=args.registry_username,
                                         password=pulumi.Output.secret(args.registry_password)),
            opts=pulumi.ResourceOptions(parent=self))
        self.ref = image.repo_digest
        self.register_outputs({"ref": self.ref})
