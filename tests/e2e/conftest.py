"""End-to-end fixtures: the packager CLI, a `joey-ops` process and real engines (`python -m engine`) on
loopback, with the real registry of tests/conftest.py."""
from __future__ import annotations

import json

import make_models  # examples/ccfraud, put on sys.path by tests/conftest.py
import pytest
from support.e2e import SPEC, packager
from support.ops import start_ops


@pytest.fixture(scope="module")
def published(registry, tmp_path_factory) -> dict:
    """The pipeline pushed to the registry once per module (`packager publish`); each test's Ops records it."""
    root = tmp_path_factory.mktemp("e2e-pipeline")
    make_models.write(root / "models")
    (root / "pipeline.yaml").write_text(SPEC)
    return json.loads(packager(["publish", str(root / "pipeline.yaml"), "--registry", f"{registry.host}/e2e",
                                "--plain-http", "--no-chart", "--json"]))


@pytest.fixture()
def ops(tmp_path):
    """A `joey-ops` process over a SQLite file of this test's own; `.stop()`/`.start()` keep port and file."""
    workdir = tmp_path / "ops"
    workdir.mkdir()
    server = start_ops(f"sqlite:///{workdir}/ops.db", workdir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def publish_id(ops, published) -> int:
    """The module's publish, recorded in this test's Ops."""
    with ops.client() as c:
        return c.publish({**published, "replaces": []})["id"]


@pytest.fixture()
def add_edge(ops, publish_id):
    """add_edge(name) -> the EDGE_BUNDLE `packager edge add` prints for a new edge of the publish."""
    def add(name: str) -> str:
        return json.loads(packager(["edge", "add", str(publish_id), name, "--json"], ops))[
            "docker_run_variables"]["EDGE_BUNDLE"]
    return add
