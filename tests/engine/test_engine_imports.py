"""What importing the apps loads (issue 12): the engine carries no build, CLI or Ops-server code (nor rich, which
httpx pulls in with click), and the Pulumi program loads no model runtime. Each in a fresh interpreter."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

INFRA_MODULES = ["infra.settings", "infra.k8s_args", "infra.policies", "infra.edge_site", "infra.ops_center",
                 "infra.ops_edge", "infra.docker_edge", "infra.registry", "infra.engine_image", "infra.namespace",
                 "infra.edge", "infra.crossguard"]


def loaded_after(*modules: str) -> list[str]:
    """sorted(sys.modules) of a fresh interpreter after importing `modules`."""
    code = "import importlib, json, sys\n" \
           f"for m in {list(modules)!r}: importlib.import_module(m)\n" \
           "print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def offenders(loaded: list[str], roots: set[str]) -> list[str]:
    return [m for m in loaded if m.split(".")[0] in roots]


def test_the_engine_loads_no_packager_ops_center_rich_onnx_or_yaml():
    loaded = loaded_after("engine.app")
    assert "engine.app" in loaded
    assert offenders(loaded, {"packager", "opscenter", "rich", "onnx", "yaml", "httpx"}) == []


def test_the_pulumi_program_loads_no_model_runtime():
    pytest.importorskip("pulumi")
    loaded = loaded_after(*INFRA_MODULES)
    assert set(INFRA_MODULES) <= set(loaded)
    assert offenders(loaded, {"onnx", "onnxruntime", "numpy"}) == []
