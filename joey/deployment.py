"""Where and how an engine runs: the `deployment` block of a pipeline spec, also Pulumi's per-edge settings."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from joey import quantity


class StrictModel(BaseModel):
    """Unknown fields are errors, types are not coerced, values are frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DeploymentSpec(StrictModel):
    cpus: float = Field(1.0, gt=0, description="CPU limit and request; also onnxruntime's threads.")
    memory: str = Field("1Gi", description="Memory limit and request, a Kubernetes quantity.")
    gpus: int = Field(0, ge=0, description="nvidia.com/gpu limit; > 0 adds --gpus all to docker run.")
    arch: Literal["x86", "arm"] = Field("x86", description="Node architecture the engine targets.")
    accel: str = Field("none", pattern=r"^[a-z0-9][a-z0-9-]*$", description="Accelerator: none, cuda, ...")

    @field_validator("cpus", mode="before")
    @classmethod
    def _int_cpus(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        quantity.memory_bytes(v)
        return v
