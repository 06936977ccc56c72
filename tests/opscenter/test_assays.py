"""Assays over edge logs fed through the real ingest API: a shifted edge alerts and the other does not, scores
match a PSI computed here in plain Python, the schedule computes windows by itself, and the CLI drives them."""
from __future__ import annotations

import bisect
import json
import math
import os
import random
import subprocess
import sys
import time

import httpx
import pytest

from engine.edge_client import EdgeClient
from joey.bundle import EdgeBundle
from joey.errors import BadRequest, Conflict, Missing

HOUR_MS = 3600 * 1000
# The first window's start (epoch ms): three hours before the current one, so windows 0-2 are complete.
T0 = (int(time.time() * 1000) // HOUR_MS - 3) * HOUR_MS
EPSILON = 1e-4               # the floor docs/ops.md gives for PSI's proportions


def edge_client(c, publish_id: int, name: str, tmp_path) -> EdgeClient:
    bundle = EdgeBundle.decode(c.add_edge(publish_id, name)["docker_run_variables"]["EDGE_BUNDLE"])
    return EdgeClient(bundle, tmp_path / name)


def record(t: int, value: float) -> dict:
    return {"time": t, "in": {"tensor": [1.0, value]}, "out": {"variable": [value]}, "anomaly": {"count": 0},
            "metadata": {"pipeline_version": "v1", "partition": "ignored"}}


def feed(edge: EdgeClient, values_per_window: list[list[float]]) -> None:
    """One upload page per window, its records spread over the window's hour."""
    seq = 0
    for w, values in enumerate(values_per_window):
        step = HOUR_MS // len(values)
        records = [record(T0 + w * HOUR_MS + i * step, v) for i, v in enumerate(values)]
        edge.upload_page(seq, seq + len(records) - 1, records)
        seq += len(records)


def reference_proportions(values: list[float], edges: list[float]) -> list[float]:
    """docs/ops.md's bins, counted one value at a time: below edges[0], N bins (the last closed), above edges[-1]."""
    counts = [0] * (len(edges) + 1)
    for v in values:
        if v < edges[0]:
            counts[0] += 1
        elif v > edges[-1]:
            counts[-1] += 1
        else:
            counts[min(bisect.bisect_right(edges, v), len(edges) - 1)] += 1
    return [n / len(values) for n in counts]


def reference_psi(window: list[float], baseline: list[float]) -> float:
    total = 0.0
    for w, b in zip(window, baseline, strict=True):
        w, b = max(w, EPSILON), max(b, EPSILON)
        total += (w - b) * math.log(w / b)
    return total


def test_the_shifted_edge_alerts_and_psi_matches_a_reference(ops, make_record, tmp_path):
    rng = random.Random(18)
    baseline = [rng.gauss(0.0, 1.0) for _ in range(2000)]
    same = [[rng.gauss(0.0, 1.0) for _ in range(400)] for _ in range(3)]
    shifted = [[rng.gauss(1.5, 1.0) for _ in range(400)] for _ in range(3)]
    with ops.client() as c:
        pub = c.publish(make_record("drift"))
        with edge_client(c, pub["id"], "store-a", tmp_path) as a, edge_client(c, pub["id"], "store-b", tmp_path) as b:
            feed(a, same)
            feed(b, shifted)
        assay = c.create_assay({
            "name": "price-drift", "pipeline_name": "drift", "field": "out.variable[0]",
            "baseline": {"values": baseline}, "window": {"width_seconds": 3600, "start": T0},
            "bins": {"mode": "quantile", "count": 5}, "alert_threshold": 0.25,
            "partitions": ["store-a", "store-b"]})
        ran = c.run_assay(assay["id"], end=T0 + 3 * HOUR_MS)["results"]
        stored = c.assay_results(assay["id"], end=T0 + 3 * HOUR_MS)["results"]
        assert [a["name"] for a in c.list_assays("drift")] == ["price-drift"]

    edges = assay["bins"]["edges"]
    assert len(edges) == 6 and assay["metric"] == "psi"
    expected_baseline = reference_proportions(baseline, edges)
    assert assay["bins"]["baseline"] == pytest.approx(expected_baseline, abs=1e-12)
    assert sorted((r["partition"], r["window_start"]) for r in ran) == sorted(
        (p, T0 + w * HOUR_MS) for p in ("store-a", "store-b") for w in range(3))
    # The schedule (woken by create) may compute the same windows again meanwhile: all but computed_at agree.
    assert sorted(({**r, "computed_at": None} for r in ran), key=lambda r: (r["partition"], r["window_start"])) \
        == sorted(({**r, "computed_at": None} for r in stored), key=lambda r: (r["partition"], r["window_start"]))
    fed = {"store-a": same, "store-b": shifted}
    for r in ran:
        values = fed[r["partition"]][(r["window_start"] - T0) // HOUR_MS]
        assert r["records"] == len(values) and r["window_end"] - r["window_start"] == HOUR_MS
        window = reference_proportions(values, edges)
        assert r["bins"]["window"] == pytest.approx(window, abs=1e-12)
        assert abs(r["score"] - reference_psi(window, expected_baseline)) < 1e-9
        assert r["alert"] is (r["partition"] == "store-b")
    scrape = httpx.get(f"{ops.url}/metrics").text
    for edge, alert in (("store-a", 0), ("store-b", 1)):
        assert f'joey_assay_alert{{assay="price-drift",partition="{edge}",pipeline="drift"}} {alert}.0' in scrape


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_scheduled_assay_over_a_logged_baseline_computes_its_windows_itself(ops, make_record, tmp_path):
    with ops.client() as c:
        pub = c.publish(make_record("sched"))
        with edge_client(c, pub["id"], "edge-1", tmp_path) as e:
            feed(e, [[float(i % 10) for i in range(100)], [float(i % 10) for i in range(100)],
                     [9.0 + i % 3 for i in range(99)]])
        assay = c.create_assay({
            "name": "tensor-drift", "pipeline_name": "sched", "field": "in.tensor[1]",
            "baseline": {"start": T0, "end": T0 + HOUR_MS}, "window": {"width_seconds": 3600, "start": T0},
            "bins": {"mode": "equal", "count": 3}, "metric": "maxdiff", "alert_threshold": 0.5})
        deadline = time.monotonic() + 60
        while len(results := c.assay_results(assay["id"], end=T0 + 3 * HOUR_MS)["results"]) < 3 \
                and time.monotonic() < deadline:
            time.sleep(0.2)
    assert assay["bins"]["edges"] == [0.0, 3.0, 6.0, 9.0] and assay["baseline"] == {
        "start": T0, "end": T0 + HOUR_MS, "partition": None}
    assert [(r["partition"], r["records"], r["alert"]) for r in results] == [
        (None, 100, False), (None, 100, False), (None, 99, True)]
    # The last window: every value is at least 9 (the top bin holds 9, the outlier bin above it 10 and 11).
    assert results[2]["bins"]["window"] == pytest.approx([0, 0, 0, 1 / 3, 2 / 3])
    assert results[2]["score"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_assays_are_refused_naming_what_is_wrong(ops, make_record, tmp_path):
    spec = {"name": "x", "pipeline_name": "bad", "field": "metadata.pipeline_version",
            "baseline": {"start": T0, "end": T0 + HOUR_MS}, "window": {"width_seconds": 60}}
    with ops.client() as c:
        with pytest.raises(Missing, match="no pipeline 'bad'"):
            c.create_assay(spec)
        pub = c.publish(make_record("bad"))
        with edge_client(c, pub["id"], "edge-1", tmp_path) as e:
            feed(e, [[1.0, 2.0]])
        with pytest.raises(BadRequest, match="metadata.pipeline_version.*do not hold numbers"):
            c.create_assay(spec)
        with pytest.raises(BadRequest, match="baseline: no values"):
            c.create_assay({**spec, "field": "out.variable[3]"})
        with pytest.raises(BadRequest, match="field: String should match"):
            c.create_assay({**spec, "field": "out.variable[0"})
        c.create_assay({**spec, "field": "out.variable[0]"})
        with pytest.raises(Conflict, match="an assay named 'x' already exists"):
            c.create_assay({**spec, "field": "out.variable[0]"})
        with pytest.raises(Missing, match="no assay with id 999"):
            c.run_assay(999)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_packager_assays_create_list_results(ops, make_record, tmp_path):
    with ops.client() as c:
        pub = c.publish(make_record("clip"))
        with edge_client(c, pub["id"], "edge-1", tmp_path) as e:
            feed(e, [[0.1 * i for i in range(50)]])
    values = tmp_path / "baseline.json"
    values.write_text(json.dumps([0.1 * i for i in range(50)]))
    env = {**os.environ, "JOEY_OPS_URL": ops.url, "JOEY_OPS_TOKEN": ops.token}

    def cli(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "packager.cli", "assays", *args, "--json"], capture_output=True,
                             text=True, env=env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    made = cli("create", "clip-drift", "--pipeline", "clip", "--field", "out.variable[0]", "--baseline-values",
               str(values), "--width", "3600", "--start", str(T0), "--partition", "edge-1", "--bins", "4")
    assert made["bins"]["count"] == 4 and made["partitions"] == ["edge-1"]
    assert [a["name"] for a in cli("list")["assays"]] == ["clip-drift"]
    got = cli("results", str(made["id"]), "--run", "--end", str(T0 + HOUR_MS))["results"]
    assert [(r["partition"], r["window_start"], r["records"], r["alert"]) for r in got] == [("edge-1", T0, 50, False)]
    assert got[0]["score"] == pytest.approx(0.0, abs=1e-12)
