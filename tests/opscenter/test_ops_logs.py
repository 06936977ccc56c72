"""Edge log pages into Ops (idempotent by edge and seq) and back out in the seeds' flattened form."""
from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest

from engine.edge_client import EdgeClient, OpsRejected
from joey.bundle import EdgeBundle
from joey.errors import ConfigError
from packager.logs_export import export_logs


def record(i: int, partition: str = "whatever-the-engine-wrote") -> dict:
    return {"time": 1713880452318 + i, "in": {"tensor": [float(i), 2.5]}, "out": {"variable": [i * 0.5]},
            "anomaly": {"count": 0},
            "metadata": {"last_model": json.dumps({"model_name": "ccfraud", "model_sha": "e2" * 32}),
                         "pipeline_version": "76bec2c1", "elapsed": [15654000, 17385666], "dropped": [],
                         "partition": partition}}


def enrolled_edge(server, make_record, tmp_path, name: str = "edge-1", pipeline: str = "ccfraud") -> EdgeClient:
    with server.client() as c:
        pub = c.publish(make_record(pipeline))
        b = EdgeBundle.decode(c.add_edge(pub["id"], name)["docker_run_variables"]["EDGE_BUNDLE"])
    return EdgeClient(b, tmp_path / name)


def raw_upload(edge: EdgeClient, page: dict) -> httpx.Response:
    cred = edge.ensure_enrolled().credential
    return httpx.post(f"{edge.base_url}/logs", json=page, headers={"Authorization": f"Bearer {cred}"})


def test_a_page_sent_twice_is_stored_once(ops, make_record, tmp_path):
    with enrolled_edge(ops, make_record, tmp_path) as edge:
        page = {"edge": "edge-1", "seq_start": 0, "seq_end": 2, "records": [record(i) for i in range(3)]}
        assert raw_upload(edge, page).json() == {"edge": "edge-1", "seq_start": 0, "seq_end": 2, "stored": 3,
                                                 "duplicates": 0}
        assert raw_upload(edge, page).json()["duplicates"] == 3
        edge.upload_page(0, 2, [record(i) for i in range(3)])          # the same page again, by the client
        edge.upload_page(2, 4, [record(i) for i in range(2, 5)])       # overlapping the last one
    with ops.client() as c:
        got = c.get_logs("ccfraud")
    assert [r["time"] - 1713880452318 for r in got["records"]] == [0, 1, 2, 3, 4]
    assert got["next"] is None


def test_export_uses_the_seeds_flattened_keys_and_forces_the_partition(ops, make_record, tmp_path):
    with enrolled_edge(ops, make_record, tmp_path) as edge:
        edge.upload_page(0, 1, [record(0), record(1, partition="forged")])
    with ops.client() as c:
        recs = c.get_logs("ccfraud", dataset=["time", "out", "metadata"])["records"]
        everything = c.get_logs("ccfraud")["records"]
    assert set(recs[0]) == {"time", "out.variable", "metadata.last_model", "metadata.pipeline_version",
                            "metadata.elapsed", "metadata.dropped", "metadata.partition"}
    assert [r["metadata.partition"] for r in recs] == ["edge-1", "edge-1"]
    assert recs[1]["out.variable"] == [0.5]
    assert {"in.tensor", "anomaly.count"} <= set(everything[0])


def test_dotted_dataset_names_keep_those_columns(ops, make_record, tmp_path):
    with enrolled_edge(ops, make_record, tmp_path) as edge:
        edge.upload_page(0, 1, [record(0), record(1)])
    with ops.client() as c:
        recs = c.get_logs("ccfraud", dataset=["time", "out.variable", "metadata.partition"])["records"]
        files = export_logs(c, "ccfraud", tmp_path / "export", dataset=["time", "out.variable",
                                                                        "metadata.partition"])
    assert [set(r) for r in recs] == [{"time", "out.variable", "metadata.partition"}] * 2
    assert recs[1]["out.variable"] == [0.5] and recs[1]["metadata.partition"] == "edge-1"
    df = pd.read_json(files[0], orient="records", lines=True)
    assert list(df.columns) == ["time", "out.variable", "metadata.partition"]


def test_logs_are_filtered_by_partition_and_paged(ops, make_record, tmp_path):
    with enrolled_edge(ops, make_record, tmp_path, "edge-a") as a, \
            enrolled_edge(ops, make_record, tmp_path, "edge-b") as b:
        a.upload_page(0, 4, [record(i) for i in range(5)])
        b.upload_page(0, 2, [record(i) for i in range(3)])
    with ops.client() as c:
        assert {r["metadata.partition"] for r in c.iter_logs("ccfraud", partition="edge-b")} == {"edge-b"}
        assert len(list(c.iter_logs("ccfraud", partition="edge-b"))) == 3
        first = c.get_logs("ccfraud", limit=3)
        assert len(first["records"]) == 3 and first["next"] is not None
        rest = c.get_logs("ccfraud", limit=100, after=first["next"])
        assert len(rest["records"]) == 5 and rest["next"] is None
        assert len(list(c.iter_logs("ccfraud", page_size=2))) == 8
        assert c.get_logs("no-such-pipeline") == {"records": [], "next": None}


def test_export_logs_writes_json_lines_files_pandas_reads(ops, make_record, tmp_path):
    with enrolled_edge(ops, make_record, tmp_path) as edge:
        edge.upload_page(0, 24, [record(i) for i in range(25)])
    out = tmp_path / "partition-edge-observability"
    out.mkdir()
    (out / "edge-logs-api-9.json").write_text("stale\n")
    (out / "keep-me.json").write_text("x\n")
    with ops.client() as c:
        files = export_logs(c, "ccfraud", out, file_prefix="edge-logs-api", records_per_file=10,
                            dataset=["time", "out", "metadata"])
        assert [f.name for f in files] == ["edge-logs-api-1.json", "edge-logs-api-2.json", "edge-logs-api-3.json"]
        assert sorted(p.name for p in out.iterdir()) == sorted([f.name for f in files] + ["keep-me.json"])
        df = pd.read_json(files[0], orient="records", lines=True)
        assert len(df) == 10 and set(pd.unique(df["metadata.partition"])) == {"edge-1"}
        assert list(df.loc[:, ["time", "out.variable", "metadata.partition"]].iloc[1]) == [
            1713880452319, [0.5], "edge-1"]
        assert sum(len(f.read_text().splitlines()) for f in files) == 25
        assert [f.name for f in export_logs(c, "ccfraud", out, limit=5)] == ["ccfraud-1.json"]
        with pytest.raises(ConfigError, match="file prefix"):
            export_logs(c, "ccfraud", out, file_prefix="../escape")


def test_logs_follow_the_edge_to_a_replacing_pipeline(ops, make_record, tmp_path):
    with enrolled_edge(ops, make_record, tmp_path) as edge:
        edge.upload_page(0, 0, [record(0)])
        with ops.client() as c:
            old = c.list_edges()[0]["publish_id"]
            c.publish(make_record("ccfraud-v2", replaces=[old]))
        edge.upload_page(1, 1, [record(1)])
    with ops.client() as c:
        assert [r["time"] for r in c.get_logs("ccfraud")["records"]] == [1713880452318]
        assert [r["time"] for r in c.get_logs("ccfraud-v2")["records"]] == [1713880452319]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_pages_are_refused_for_good(ops, make_record, tmp_path):
    with enrolled_edge(ops, make_record, tmp_path) as edge, \
            enrolled_edge(ops, make_record, tmp_path, "edge-2") as other:
        other.ensure_enrolled()
        with pytest.raises(OpsRejected, match="400 seq_start..seq_end"):
            edge.upload_page(0, 5, [record(0)])
        with pytest.raises(OpsRejected, match=r"400 records\[0\]\.metadata: expected an object"):
            edge.upload_page(0, 0, [{**record(0), "metadata": "x"}])
        with pytest.raises(OpsRejected, match=r"400 records\[0\]\.time"):
            edge.upload_page(0, 0, [{**record(0), "time": "yesterday"}])
        bad = {"edge": "edge-2", "seq_start": 0, "seq_end": 0, "records": [record(0)]}
        r = raw_upload(edge, bad)
        assert r.status_code == 403 and "belongs to edge 'edge-1'" in r.json()["message"]
        r = httpx.post(f"{edge.base_url}/logs", json={**bad, "edge": "edge-1"})
        assert r.status_code == 401 and "missing edge credential" in r.json()["message"]
        admin = httpx.post(f"{edge.base_url}/logs", json={**bad, "edge": "edge-1"},
                           headers={"Authorization": f"Bearer {ops.token}"})
        assert admin.status_code == 401  # the admin token is no edge credential
    with ops.client() as c:
        assert c.get_logs("ccfraud")["records"] == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_nan_in_a_record_comes_back_as_null(ops, make_record, tmp_path):
    with enrolled_edge(ops, make_record, tmp_path) as edge:
        edge.upload_page(0, 0, [{**record(0), "out": {"variable": [float("nan")]}}])
    with ops.client() as c:
        assert c.get_logs("ccfraud")["records"][0]["out.variable"] == [None]
