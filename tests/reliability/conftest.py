"""Fixtures for the reliability suite: a published pipeline, engines and Ops centers as real processes on
loopback, and the small helpers every scenario shares. docs/reliability.md lists the scenarios."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

import make_models  # noqa: E402  (examples/ccfraud, put on sys.path by tests/conftest.py)
from support.engine import publish_spec  # noqa: E402
from support.specs import one_step  # noqa: E402

SPEC = one_step()


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reliability-pipeline")
    make_models.write(root / "models")
    (root / "pipeline.yaml").write_text(SPEC)
    return root


@pytest.fixture(scope="session")
def published(pipeline_dir, registry) -> dict:
    """The one-step ccfraud pipeline, published (no chart) to the session registry."""
    return publish_spec(pipeline_dir / "pipeline.yaml", registry)
