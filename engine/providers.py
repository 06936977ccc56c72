"""Which onnxruntime execution providers run a pipeline: the one its artifact's `accel` asks for, then CPU.

    accel none      CPUExecutionProvider
    accel cuda      CUDAExecutionProvider, then CPUExecutionProvider
    accel openvino  OpenVINOExecutionProvider, then CPUExecutionProvider

A publish *demands* its accelerator when it also takes GPUs (`deployment.gpus > 0`: engine_config's `gpu: true`,
the chart's nvidia.com/gpu request, `--gpus all`): it was sized for the device, so an engine that cannot use
it refuses to start, in one line. With `gpus: 0` the accelerator is a preference: an engine without it runs on
CPU and says so in its log. onnxruntime runs on CPU, silently, when a provider it has cannot start (no device,
no driver): the providers a session got are checked too. See docs/engine-api.md.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from joey.errors import JoeyError
from joey.pipeline_config import EngineConfig

log = logging.getLogger("engine")

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
ACCEL_PROVIDERS = {"cuda": CUDA, "openvino": "OpenVINOExecutionProvider"}


class AcceleratorUnavailable(JoeyError):
    """The publish demands an accelerator (accel with gpus > 0) that this engine cannot use."""

    exit_code = 5
    http_status = 503

    def __init__(self, pipeline: str, engine: EngineConfig, why: str):
        super().__init__(f"pipeline {pipeline!r} demands accel {engine.accel} (deployment.gpus: {engine.gpus}), "
                         f"but {why}",
                         hint=f"run the engine image built for it (packager image build --accel {engine.accel}), "
                              "or publish with gpus: 0 to let the engine fall back to CPU")


def demanded(engine: EngineConfig) -> bool:
    return engine.accel != "none" and engine.gpus > 0


def requested(pipeline: str, engine: EngineConfig, available: Iterable[str]) -> list[str]:
    """The providers to ask onnxruntime for, best first, given the ones it has (get_available_providers)."""
    if engine.accel == "none":
        return [CPU]
    available = list(available)
    wanted = ACCEL_PROVIDERS.get(engine.accel)
    if wanted in available:
        return [wanted, CPU]
    if wanted is None:
        _fall_back(pipeline, engine, f"no onnxruntime execution provider is known for accel {engine.accel!r} "
                                     f"(known: {', '.join(sorted(ACCEL_PROVIDERS))})")
    else:
        _fall_back(pipeline, engine, f"this engine's onnxruntime has no {wanted} (it has {', '.join(available)})")
    return [CPU]


def confirm(pipeline: str, engine: EngineConfig, asked: list[str], got: Iterable[str]) -> None:
    """Refuse or log a provider asked for that a session did not get."""
    missing = [p for p in asked if p != CPU and p not in set(got)]
    if missing:
        _fall_back(pipeline, engine, f"{missing[0]} did not start (no device or driver for it?)")


def _fall_back(pipeline: str, engine: EngineConfig, why: str) -> None:
    if demanded(engine):
        raise AcceleratorUnavailable(pipeline, engine, why)
    log.warning("Pipeline %s asks for accel %s, but %s: running on %s", pipeline, engine.accel, why, CPU)
