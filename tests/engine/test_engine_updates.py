"""In-line updates (issue 9): a real engine under a steady load of single-row requests moves to a replacement
publish, found by re-resolving its tag or named by a real `joey-ops`, without failing a request; replacements
that cannot be served (onnxruntime refuses the model, NaN outputs, outputs of another shape than declared) leave
the previous pipeline serving, and say so in /status and in Ops."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
from onnx import TensorProto, helper, numpy_helper
from support.engine import RECORDS, features, run_model, start_engine
from support.ops import start_ops
from support.procs import wait_for
from support.signing import move_tag

from engine.settings import from_env
from joey.errors import ConfigError
from joey.names import parse
from joey.registry import Registry
from joey.signing import generate_keypair, load_signing_key
from packager.publish import publish
from packager.signing import sign_publish

NAMESPACE = "updates"
NAME = "swap-pipeline"
REPO = f"{NAMESPACE}/pipelines/{NAME}"
SPEC = f"""\
name: {NAME}
steps:
  - name: scorer
    model: models/scorer.onnx
    tensor_fields: [tensor]
"""
INTERVAL = "0.3"   # JOEY_UPDATE_INTERVAL: seconds between looks
# Why each broken replacement is refused, as /status and Ops say it.
REFUSALS = {"nan": "outputs must be finite", "wide": "declared shape [",
            "unloadable": "onnxruntime cannot load model 'scorer'"}


def scorer(w: np.ndarray, b: float, declared: tuple = ("batch", 1), out_type: int = TensorProto.FLOAT,
           sigmoid: bool = True) -> onnx.ModelProto:
    """tensor float[N,29] -> variable = sigmoid(tensor @ w + b), declared as `declared` of `out_type`."""
    nodes = [helper.make_node("MatMul", ["tensor", "W"], ["z0"]),
             helper.make_node("Add", ["z0", "B"], ["z" if sigmoid else "variable"])]
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["z"], ["variable"]))
    graph = helper.make_graph(
        nodes, "scorer", [helper.make_tensor_value_info("tensor", TensorProto.FLOAT, ["batch", 29])],
        [helper.make_tensor_value_info("variable", out_type, list(declared))],
        [numpy_helper.from_array(w.astype(np.float32), "W"), numpy_helper.from_array(np.array([b], np.float32), "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)   # every one of them passes the checker the packager runs
    return model


def variant_models() -> dict[str, onnx.ModelProto]:
    rng = np.random.default_rng(21)
    w = rng.normal(0, 0.4, (29, 1))
    return {
        "a": scorer(w, -0.5),
        "b": scorer(-w, 0.5),                                 # another model: other outputs
        "nan": scorer(w, float("nan")),                       # loads and runs, but every output is NaN
        "wide": scorer(rng.normal(0, 0.4, (29, 2)), 0.0),     # gives [N,2] where it declares [N,1]
        "unloadable": scorer(w, 0.0, out_type=TensorProto.INT64, sigmoid=False),  # onnxruntime refuses the types
    }


@pytest.fixture(scope="module")
def variants(registry, tmp_path_factory) -> dict[str, dict]:
    """Each variant published (no chart) as a version of the same pipeline; its record plus `model` and `spec`
    (the local files)."""
    root = tmp_path_factory.mktemp("update-variants")
    out = {}
    for name, model in variant_models().items():
        (root / name / "models").mkdir(parents=True)
        onnx.save(model, root / name / "models" / "scorer.onnx")
        (root / name / "pipeline.yaml").write_text(SPEC)
        record = publish(root / name / "pipeline.yaml", registry=f"{registry.host}/{NAMESPACE}", plain_http=True,
                         with_chart=False)
        out[name] = {**record, "model": root / name / "models" / "scorer.onnx", "spec": root / name / "pipeline.yaml"}
    assert len({v["pipeline_digest"] for v in out.values()}) == len(out)
    return out


class Load:
    """A client thread sending one-row requests to /infer, one after another, for as long as it runs: every
    answer's pipeline version and score, and every failure."""

    def __init__(self, url: str, x: np.ndarray):
        self.url, self.body = url, json.dumps([{"tensor": x[0].tolist()}]).encode()
        self.answers: list[tuple[str, float]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with requests.Session() as http:
            while not self._stop.is_set():
                try:
                    r = http.post(f"{self.url}/infer", data=self.body, headers={"Content-Type": RECORDS}, timeout=30)
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code} {r.text}")
                        continue
                    record = r.json()[0]
                    self.answers.append((record["metadata"]["pipeline_version"], record["out"]["variable"][0]))
                except (requests.RequestException, ValueError, KeyError) as e:
                    self.failures.append(f"{type(e).__name__}: {e}")

    def served(self, version: str) -> int:
        return sum(1 for v, _ in list(self.answers) if v == version)

    def wait_served(self, version: str, count: int = 1) -> None:
        wait_for(f"{count} answers of version {version}", lambda: self.served(version) >= count)


def status(eng) -> dict:
    r = eng.get("/status")
    assert r.status_code == 200, r.text
    return r.json()


def refused(eng, variant: dict) -> dict:
    """The engine's last update outcome once it concerns `variant`."""
    def probe():
        last = status(eng)["update"]["last_update"]
        return last if last and last["pipeline_digest"] == variant["pipeline_digest"] else None
    return wait_for(f"the engine trying {variant['pipeline_version']}", probe)


def check_answers(load: Load, order: list[dict], x: np.ndarray) -> None:
    """No request failed; the answers went through `order`'s versions in turn, each with its model's score."""
    assert load.failures == []
    versions = [v for v, _ in load.answers]
    runs = [versions[0]] + [v for prev, v in zip(versions, versions[1:]) if v != prev]
    assert runs == [v["pipeline_version"] for v in order]
    for variant in order:
        expected = float(run_model(variant["model"], x)[0][0])
        scores = {s for v, s in load.answers if v == variant["pipeline_version"]}
        assert np.allclose(sorted(scores), expected, rtol=1e-6), (variant["pipeline_version"], scores, expected)


def ops_record(variant: dict, replaces: list[int]) -> dict:
    """The publish record the packager would send Ops for the variant."""
    return {**{k: v for k, v in variant.items() if k not in ("model", "spec")}, "replaces": replaces}


def current_digest(persist: Path) -> str:
    return json.loads((persist / "pipelines" / "current").read_text())["digest"]


def test_a_moved_tag_is_swapped_in_under_load_and_broken_replacements_are_refused(variants, registry, tmp_path):
    reg = Registry(registry.host, plain_http=True)
    a, b = variants["a"], variants["b"]
    move_tag(reg, REPO, "stable", REPO, a["pipeline_version"])
    url = f"{registry.host}/{REPO}:stable"
    persist, x = tmp_path / "persist", features(1, seed=3)
    eng = start_engine(url, persist, JOEY_UPDATE_INTERVAL=INTERVAL)
    try:
        with Load(eng.url, x) as load:
            load.wait_served(a["pipeline_version"], 20)
            move_tag(reg, REPO, "stable", REPO, b["pipeline_version"])
            moved_after = len(load.answers)
            load.wait_served(b["pipeline_version"], 20)
            update = status(eng)["update"]
            for bad, reason in REFUSALS.items():
                move_tag(reg, REPO, "stable", REPO, variants[bad]["pipeline_version"])
                outcome = refused(eng, variants[bad])
                assert outcome["status"] == "failed" and reason in outcome["error"], outcome
                assert outcome["pipeline_version"] == variants[bad]["pipeline_version"]
            load.wait_served(b["pipeline_version"], load.served(b["pipeline_version"]) + 20)
        check_answers(load, [a, b], x)
        after = status(eng)
        assert eng.get("/pipelines").json()["pipelines"][0]["version"] == b["pipeline_version"]
        logged = eng.post("/logs", b"{}", "application/json").json()
        assert {r["metadata"]["pipeline_version"] for r in logged} == {a["pipeline_version"], b["pipeline_version"]}
    finally:
        assert eng.stop() == 0

    swap = update["last_update"]
    assert (swap["status"], swap["pipeline_digest"], swap["error"]) == ("updated", b["pipeline_digest"], None)
    served_during = next(i for i, (v, _) in enumerate(load.answers[moved_after:]) if v == b["pipeline_version"])
    print(f"\ntag moved -> new pipeline serving in {swap['seconds']:.2f}s (pull, load, smoke test, swap); "
          f"{served_during} requests answered by the old pipeline meanwhile, {len(load.answers)} in all, 0 failed")
    assert after["serving"]["pipeline_digest"] == b["pipeline_digest"]
    assert (after["update"]["updates"], after["update"]["failures"]) == (1, 3)
    assert after["update"]["source"] == "tag" and after["update"]["watching"] == url
    assert current_digest(persist) == b["pipeline_digest"]   # `current` moved with the swap, not with a failure
    text = eng.log_text()
    assert f"In-line update: swapped pipeline {NAME} version {b['pipeline_version']}" in text
    assert f"failed: smoke test of pipeline '{NAME}' failed" in text

    # Restarted while the tag names a broken pipeline: it is refused as an update would be, the last good serves.
    again = start_engine(url, persist, JOEY_UPDATE_INTERVAL="0")
    try:
        assert again.get("/pipelines").json()["pipelines"][0]["version"] == b["pipeline_version"]
        last = status(again)["update"]
        assert last["state"] == "off" and last["last_update"]["status"] == "failed"
        assert REFUSALS["unloadable"] in last["last_update"]["error"]
    finally:
        assert again.stop() == 0
    assert current_digest(persist) == b["pipeline_digest"]


def test_a_replacement_is_loaded_only_once_it_is_signed(variants, registry, tmp_path):
    keys = generate_keypair(tmp_path / "key")
    signed_ns = f"{registry.host}/{NAMESPACE}-signed"
    a = {**variants["a"], **publish(variants["a"]["spec"], registry=signed_ns, plain_http=True, with_chart=False,
                                    sign_key=keys[0])}
    b = {**variants["b"], **publish(variants["b"]["spec"], registry=signed_ns, plain_http=True, with_chart=False)}
    reg, repo = Registry(registry.host, plain_http=True), f"{NAMESPACE}-signed/pipelines/{NAME}"
    move_tag(reg, repo, "stable", repo, a["pipeline_version"])
    x = features(1, seed=5)
    eng = start_engine(f"{signed_ns}/pipelines/{NAME}:stable", tmp_path / "persist", JOEY_UPDATE_INTERVAL=INTERVAL,
                       JOEY_VERIFY_KEY=str(keys[1]))
    try:
        with Load(eng.url, x) as load:
            load.wait_served(a["pipeline_version"], 20)
            move_tag(reg, repo, "stable", repo, b["pipeline_version"])
            outcome = refused(eng, b)
            assert outcome["status"] == "failed" and "no signature is attached" in outcome["error"], outcome
            assert "Fetching model layers" not in eng.log_text().rsplit("pulling it", 1)[1]   # nothing pulled
            load.wait_served(a["pipeline_version"], load.served(a["pipeline_version"]) + 20)
            assert status(eng)["update"]["failures"] == 1   # looked at again and again, counted once
            sign_publish(reg, parse(b["pipeline_url"]), load_signing_key(keys[0]))
            load.wait_served(b["pipeline_version"], 20)
        check_answers(load, [a, b], x)
    finally:
        assert eng.stop() == 0
    assert f"Verified the signature of {signed_ns}/pipelines/{NAME}:stable ({b['pipeline_digest']})" in eng.log_text()


@pytest.fixture()
def ops(tmp_path):
    server = start_ops(f"sqlite:///{tmp_path}/ops.db", tmp_path)
    yield server
    server.stop()


def test_ops_moves_the_edge_to_a_replacement_and_hears_of_a_refused_one(variants, ops, tmp_path):
    a, b, nan = variants["a"], variants["b"], variants["nan"]
    with ops.client() as c:
        first = c.publish(ops_record(a, []))
        bundle = c.add_edge(first["id"], "edge-update-1")["docker_run_variables"]["EDGE_BUNDLE"]
    persist, x = tmp_path / "persist", features(1, seed=4)
    env = {"EDGE_BUNDLE": bundle, "JOEY_UPDATE_INTERVAL": INTERVAL}

    def edge() -> dict:
        with ops.client() as c:
            return c.list_edges()[0]

    eng = start_engine("", persist, **env)   # everything from the bundle, as an edge runs
    try:
        with Load(eng.url, x) as load:
            load.wait_served(a["pipeline_version"], 20)
            wait_for("the edge checking in", lambda: (edge()["serving"] or {}).get("pipeline_digest") == a["pipeline_digest"])
            with ops.client() as c:
                second = c.publish(ops_record(b, [first["id"]]))
            load.wait_served(b["pipeline_version"], 20)
            moved = wait_for("Ops hearing of the update", lambda: (e := edge())["last_update"] and e)
            with ops.client() as c:
                c.publish(ops_record(nan, [second["id"]]))
            failed = wait_for("Ops hearing of the refusal",
                           lambda: (e := edge())["last_update"]["status"] == "failed" and e)
            load.wait_served(b["pipeline_version"], load.served(b["pipeline_version"]) + 20)
        check_answers(load, [a, b], x)
        engine_view = status(eng)["update"]
    finally:
        assert eng.stop() == 0

    assert moved["last_update"]["status"] == "updated" and moved["last_update"]["pipeline_url"] == b["pipeline_url"]
    assert moved["serving"]["pipeline_version"] == b["pipeline_version"]
    update = failed["last_update"]
    assert (update["pipeline_url"], update["pipeline_version"]) == (nan["pipeline_url"], nan["pipeline_version"])
    assert REFUSALS["nan"] in update["error"] and update["reported_at"]
    assert failed["serving"]["pipeline_version"] == b["pipeline_version"]   # what it serves on
    assert failed["pipeline_version"] == nan["pipeline_version"]            # the publish Ops attached it to
    assert engine_view["source"] == "ops" and engine_view["watching"] == nan["pipeline_url"]
    assert (engine_view["updates"], engine_view["failures"]) == (1, 1)
    assert "Ops: edge edge-update-1 now runs publish" in eng.log_text()

    # A restart with the same EDGE_BUNDLE (which names the first publish) serves the updated pipeline at once.
    again = start_engine("", persist, EDGE_BUNDLE=bundle, JOEY_UPDATE_INTERVAL="0")
    try:
        assert again.get("/pipelines").json()["pipelines"][0]["version"] == b["pipeline_version"]
    finally:
        assert again.stop() == 0
    assert f"PIPELINE_URL {a['pipeline_url']} was updated in-line to {b['pipeline_url']}" in again.log_text()


@pytest.mark.parametrize("raw, expected", [("", 30.0), ("0", 0.0), ("2.5", 2.5)])
def test_the_update_interval(raw, expected, tmp_path):
    env = {"PIPELINE_URL": "127.0.0.1:5000/joey/pipelines/p:1", "JOEY_UPDATE_INTERVAL": raw}
    assert from_env(env, persist_dir=tmp_path).update_interval == expected


@pytest.mark.parametrize("raw", ["-1", "soon", "nan", "inf"])
def test_a_bad_update_interval_is_a_setting_error(raw, tmp_path):
    env = {"PIPELINE_URL": "127.0.0.1:5000/joey/pipelines/p:1", "JOEY_UPDATE_INTERVAL": raw}
    with pytest.raises(ConfigError, match="JOEY_UPDATE_INTERVAL"):
        from_env(env, persist_dir=tmp_path)
