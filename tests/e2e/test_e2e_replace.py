"""Replacing a publish end to end (seed 004): two real engines enrolled as edges of a publish, `packager publish
--replaces` with Ops prints for each edge it moves that edge's commands with its replacement bundle, and both
engines move to the new version through their check-ins with Ops."""
from __future__ import annotations

import json
import re

import make_models  # examples/ccfraud, put on sys.path by tests/conftest.py
from support.e2e import ENGINE_ENV, packager, upload_status
from support.engine import start_engine
from support.procs import wait_for
from support.specs import one_step

from joey.bundle import REPLACE_PLACEHOLDER, EdgeBundle

PIPELINE = "e2e-replace"
EDGES = ("replace-edge-a", "replace-edge-b")


def write_pipeline(root, seed: int):
    """The one-step spec over a logistic regression of its own weights: each seed is another version."""
    (root / "models").mkdir(parents=True)
    (root / "models" / "ccfraud-logreg.onnx").write_bytes(
        make_models.logistic_regression(seed=seed).SerializeToString(deterministic=True))
    (root / "pipeline.yaml").write_text(one_step(PIPELINE))
    return root / "pipeline.yaml"


def serving(engine) -> str:
    return engine.get("/pipelines").json()["pipelines"][0]["version"]


def test_a_replace_prints_each_moved_edge_and_moves_both_engines(ops, registry, tmp_path):
    publish = ["--registry", f"{registry.host}/e2e", "--plain-http", "--ops", ops.url]
    first = json.loads(packager(["publish", str(write_pipeline(tmp_path / "v1", seed=7)), *publish, "--json"], ops))
    bundles = {name: json.loads(packager(["edge", "add", str(first["id"]), name, "--json"], ops))[
        "docker_run_variables"]["EDGE_BUNDLE"] for name in EDGES}
    engines = [start_engine("", tmp_path / name, EDGE_BUNDLE=bundles[name], JOEY_PLAIN_HTTP="1",
                            JOEY_UPDATE_INTERVAL="0.3", **ENGINE_ENV) for name in EDGES]
    try:
        for engine in engines:
            wait_for("the edge enrolled", lambda e=engine: upload_status(e)["enrolled"])
            assert serving(engine) == first["pipeline_version"]

        text = packager(["publish", str(write_pipeline(tmp_path / "v2", seed=8)), *publish,
                         "--replaces", str(first["id"])], ops)
        second = re.search(r"^pipeline_version\s+(\S+)$", text, re.M).group(1)
        assert second != first["pipeline_version"]
        assert re.search(rf'^replaces\s+Publish {first["id"]}, Pipeline "{PIPELINE}", Version '
                         rf'{first["pipeline_version"]}$', text, re.M), text
        for name in EDGES:
            sections = re.findall(rf"^# (\w+) — edge {name} — [^\n]*\n(.*?)(?=\n\n|\n# |\Z)", text, re.M | re.S)
            assert [kind for kind, _ in sections] == ["docker_run", "podman_run", "helm_install"], text
            assert sections[2][1].startswith("helm upgrade ")
            for _, command in sections:
                bundle = EdgeBundle.decode(re.search(r"(?:EDGE_BUNDLE|edgeBundle)=(\S+)", command).group(1))
                assert (bundle.edge_name, bundle.join_token) == (name, REPLACE_PLACEHOLDER)
                assert bundle.pipeline_url.endswith(f":{second}")

        for engine in engines:   # in-line updates: each engine hears of the move at its next check-in
            wait_for("the engine serving the replacement", lambda e=engine: serving(e) == second)
    finally:
        for engine in engines:
            assert engine.stop() == 0
    with ops.client() as c:
        assert {e["name"]: e["pipeline_version"] for e in c.list_edges(PIPELINE)} == dict.fromkeys(EDGES, second)
