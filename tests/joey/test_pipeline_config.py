"""The config blob's engine_config: the seeds' shape exactly, and configs of the earlier shape still read."""
from __future__ import annotations

from joey.pipeline_config import EngineConfig


def test_engine_config_is_the_seeds_shape():
    assert EngineConfig(cpus=4, memory="3Gi").to_json() == {
        "engine": {"resources": {"limits": {"cpu": 4.0, "memory": "3Gi"}, "requests": {"cpu": 4.0, "memory": "3Gi"},
                                 "accel": "none", "arch": "x86", "gpu": False}},
        "engineAux": {"autoscale": {"type": "none"}, "images": {}},
    }


def test_round_trip_and_the_earlier_shape():
    cfg = EngineConfig(cpus=2.5, memory="900Mi", gpus=1, arch="arm", accel="cuda")
    assert EngineConfig.from_json(cfg.to_json()) == cfg
    earlier = {"engine": {"resources": {"limits": {"cpu": 2.5, "memory": "900Mi", "nvidia.com/gpu": 1}},
                          "accel": "cuda", "arch": "arm", "gpu": True}, "engineAux": {}}
    assert EngineConfig.from_json(earlier) == cfg
