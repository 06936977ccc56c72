"""A publish's models as CNCF ModelPack artifacts: NS/models/<name>:<model version>, one per step.

Each weight layer is the blob the pipeline already pushed: a registry is asked to mount it from the pipeline's
repository (nothing is sent or stored twice), a layout has it already. The manifests are the ones the
pipeline config names by digest (joey.modelpack), so what is pushed here is checked against that reference.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from joey import mediatypes
from joey.descriptor import Descriptor, digest_of
from joey.errors import BadArtifact
from joey.modelpack import model_manifest
from joey.names import model_repository_beside
from joey.pipeline_config import PipelineConfig, StepConfig
from joey.transfer import Target


@dataclass(frozen=True)
class PushedModel:
    name: str
    repository: str
    tag: str          # the model version
    digest: str       # the ModelPack manifest's

    def to_json(self) -> dict:
        return dict(self.__dict__)


def push_models(target: Target, pipeline_repo: str, cfg: PipelineConfig) -> list[PushedModel]:
    """Push the ModelPack artifact of every step of `cfg`, whose pipeline is already in `pipeline_repo`, to the
    models repositories of the same namespace."""
    return [push_model(target, pipeline_repo, step) for step in cfg.steps]


def push_model(target: Target, pipeline_repo: str, step: StepConfig) -> PushedModel:
    raw, config, layer = model_manifest(step.name, step.model_version, step.model.sha256, step.model.size,
                                        step.file, step.framework)
    if digest_of(raw) != step.modelpack_digest:   # one builder: a mismatch is a bug, not bad input
        raise BadArtifact(pipeline_repo, f"step {step.name}: ModelPack manifest {digest_of(raw)} is not the "
                                         f"{step.modelpack_digest} its pipeline config names")
    repo = model_repository_beside(pipeline_repo, step.name)
    if not target.blob_exists(repo, layer.digest):
        mount = getattr(target, "mount_blob", None)
        if mount is None or not mount(repo, layer.digest, pipeline_repo):
            with target.read_blob(pipeline_repo, layer.digest) as f:
                target.write_blob(repo, layer, f)
    target.write_blob(repo, Descriptor.for_bytes(mediatypes.MODEL_CONFIG, config), io.BytesIO(config))
    digest = target.write_manifest(repo, step.model_version, raw, mediatypes.OCI_MANIFEST)
    return PushedModel(step.name, repo, step.model_version, digest)
