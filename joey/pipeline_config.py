"""The pipeline artifact's config blob: typed, and (de)serialised canonically.

This is the one description of a pipeline that the engine runs and the chart and commands are made from.
Canonical JSON (sorted keys, no spaces) makes equal pipelines byte-identical, so the pipeline version, a
UUID derived from the config without the version, is stable across builds.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from joey import mediatypes
from joey.descriptor import digest_of
from joey.modelpack import model_manifest

SCHEMA_VERSION = 1
# uuid5 namespaces: a fixed random UUID of Joey's, then one per kind so a model and a pipeline never collide.
_NS = uuid.UUID("6f1d8f0e-4f5c-4c47-9d53-2a1f0d7c5b11")
PIPELINE_NS = uuid.uuid5(_NS, "pipeline")
MODEL_NS = uuid.uuid5(_NS, "model")


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


@dataclass(frozen=True)
class TensorSig:
    """One model input or output: element type as a numpy dtype name, shape with symbolic dims kept."""

    name: str
    type: str
    shape: tuple[int | str | None, ...] | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "shape": None if self.shape is None else list(self.shape)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TensorSig:
        shape = d.get("shape")
        return cls(d["name"], d["type"], None if shape is None else tuple(shape))

    @property
    def width(self) -> int | None:
        """Values per row (product of the non-batch dims) when all are fixed; None otherwise."""
        if self.shape is None or len(self.shape) == 0:
            return None
        n = 1
        for d in self.shape[1:]:
            if not isinstance(d, int) or d <= 0:
                return None
            n *= d
        return n


@dataclass(frozen=True)
class ModelInfo:
    """What inspection of one ONNX file found."""

    sha256: str
    size: int
    inputs: tuple[TensorSig, ...]
    outputs: tuple[TensorSig, ...]
    opset: dict[str, int]
    producer: str


@dataclass(frozen=True)
class StepConfig:
    name: str            # model name (DNS-1123)
    file: str            # the layer's org.opencontainers.image.title: where the engine finds the model
    source_path: str     # the spec's `model:` path, as written (org.cncf.model.filepath)
    framework: str
    tensor_fields: tuple[str, ...] | None
    model: ModelInfo

    @property
    def model_version(self) -> str:
        """A UUID derived from the model's name and bytes: same file, same version."""
        return str(uuid.uuid5(MODEL_NS, f"{self.name}@sha256:{self.model.sha256}"))

    @property
    def digest(self) -> str:
        return f"sha256:{self.model.sha256}"

    def modelpack_manifest(self) -> bytes:
        """This model as a ModelPack artifact's manifest (pushed to NS/models/<name>:<model version>)."""
        return model_manifest(self.name, self.model_version, self.model.sha256, self.model.size, self.file,
                              self.framework)[0]

    @property
    def modelpack_digest(self) -> str:
        """The digest of that manifest: how the pipeline config references the model artifact."""
        return digest_of(self.modelpack_manifest())

    def to_json(self) -> dict[str, Any]:
        m = self.model
        return {
            "name": self.name,
            "model_version": self.model_version,
            "sha256": m.sha256,
            "size": m.size,
            "file": self.file,
            "source_path": self.source_path,
            "framework": self.framework,
            "tensor_fields": None if self.tensor_fields is None else list(self.tensor_fields),
            "inputs": [s.to_json() for s in m.inputs],
            "outputs": [s.to_json() for s in m.outputs],
            "opset": dict(m.opset),
            "producer": m.producer,
            # derived from the fields above; written so that OCI tools follow it without rebuilding it
            "modelpack_digest": self.modelpack_digest,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StepConfig:
        tf = d.get("tensor_fields")
        return cls(
            name=d["name"], file=d["file"], source_path=d.get("source_path", d["file"]),
            framework=d.get("framework", "onnx"),
            tensor_fields=None if tf is None else tuple(tf),
            model=ModelInfo(
                sha256=d["sha256"], size=int(d["size"]),
                inputs=tuple(TensorSig.from_json(s) for s in d["inputs"]),
                outputs=tuple(TensorSig.from_json(s) for s in d["outputs"]),
                opset=dict(d.get("opset", {})), producer=d.get("producer", ""),
            ),
        )


@dataclass(frozen=True)
class EngineConfig:
    """The spec's `deployment:`; serialised exactly in the seeds' engine_config shape: accel, arch and gpu sit
    in engine.resources beside limits and requests, and engineAux carries the seeds' autoscale and images."""

    cpus: float = 1.0
    memory: str = "1Gi"
    gpus: int = 0
    arch: str = "x86"
    accel: str = "none"

    def to_json(self) -> dict[str, Any]:
        limits: dict[str, Any] = {"cpu": float(self.cpus), "memory": self.memory}
        if self.gpus:
            limits["nvidia.com/gpu"] = self.gpus
        return {
            "engine": {
                "resources": {"limits": limits, "requests": dict(limits), "accel": self.accel, "arch": self.arch,
                              "gpu": self.gpus > 0},
            },
            "engineAux": {"autoscale": {"type": "none"}, "images": {}},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EngineConfig:
        resources = d["engine"]["resources"]
        # Artifacts made before the seeds' shape kept accel/arch beside `resources`: they still load.
        placed = {**d["engine"], **resources}
        limits = resources["limits"]
        return cls(cpus=float(limits["cpu"]), memory=str(limits["memory"]),
                   gpus=int(limits.get("nvidia.com/gpu", 0)), arch=placed.get("arch", "x86"),
                   accel=placed.get("accel", "none"))


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    workspace: str | None
    steps: tuple[StepConfig, ...]
    validations: dict[str, str] = field(default_factory=dict)
    engine: EngineConfig = EngineConfig()
    version: str = ""   # filled by with_version(); empty only while being built

    def _body(self) -> dict[str, Any]:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "mediaType": mediatypes.PIPELINE_CONFIG,
            "name": self.name,
            "workspace": self.workspace,
            "steps": [s.to_json() for s in self.steps],
            "validations": dict(self.validations),
            "engine_config": self.engine.to_json(),
        }

    def with_version(self) -> PipelineConfig:
        """This config with its content-derived version set."""
        digest = canonical_json(self._body()).decode()
        return replace(self, version=str(uuid.uuid5(PIPELINE_NS, digest)))

    def to_json(self) -> dict[str, Any]:
        assert self.version, "call with_version() first"
        return {**self._body(), "version": self.version}

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PipelineConfig:
        if d.get("schemaVersion") != SCHEMA_VERSION:
            raise ValueError(f"unsupported pipeline config schemaVersion {d.get('schemaVersion')!r}")
        return cls(
            name=d["name"], workspace=d.get("workspace"),
            steps=tuple(StepConfig.from_json(s) for s in d["steps"]),
            validations=dict(d.get("validations") or {}),
            engine=EngineConfig.from_json(d["engine_config"]),
            version=d["version"],
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PipelineConfig:
        return cls.from_json(json.loads(data))
