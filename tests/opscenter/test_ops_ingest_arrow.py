"""Log pages as Arrow IPC streams (the engine's upload form): stored once per (edge, seq) like JSON pages, and
answered by get_logs exactly as the same records sent as JSON, on SQLite and PostgreSQL."""
from __future__ import annotations

import httpx
import numpy as np
import pyarrow as pa
from test_ops_logs import enrolled_edge, raw_upload, record

from engine.edge_client import arrow_page_body
from joey.opswire import LOG_PAGE_MEDIA_TYPE

N = 40


def flat_table(n: int = N) -> pa.Table:
    """record(i) for i < n, as the log store keeps them: one flat column per leaf, float32 outputs included."""
    return pa.table({
        "time": pa.array([1713880452318 + i for i in range(n)], pa.int64()),
        "in.tensor": pa.array([[float(i), 2.5] for i in range(n)], pa.list_(pa.float64())),
        "out.variable": pa.array([np.float32([i * 0.5]) for i in range(n)], pa.list_(pa.float32())),
        "anomaly.count": pa.array([0] * n, pa.int64()),
        "metadata.last_model": pa.array([record(0)["metadata"]["last_model"]] * n),
        "metadata.pipeline_version": pa.array(["76bec2c1"] * n),
        "metadata.elapsed": pa.array([[15654000, 17385666]] * n, pa.list_(pa.int64())),
        "metadata.dropped": pa.array([[]] * n, pa.list_(pa.string())),
        "metadata.partition": pa.array(["forged"] * n),
    })


def arrow_upload(edge, seq_start: int, table: pa.Table) -> httpx.Response:
    cred = edge.ensure_enrolled().credential
    return httpx.post(f"{edge.base_url}/logs", content=arrow_page_body(edge.bundle.edge_name, seq_start,
                                                                       seq_start + table.num_rows - 1, table),
                      headers={"Authorization": f"Bearer {cred}", "Content-Type": LOG_PAGE_MEDIA_TYPE})


def test_arrow_and_json_pages_answer_the_same(ops, make_record, tmp_path):
    with enrolled_edge(ops, make_record, tmp_path, "edge-json") as j, \
            enrolled_edge(ops, make_record, tmp_path, "edge-arrow") as a:
        j.upload_page(0, N - 1, [record(i) for i in range(N)])
        assert arrow_upload(a, 0, flat_table()).json() == {"edge": "edge-arrow", "seq_start": 0, "seq_end": N - 1,
                                                           "stored": N, "duplicates": 0}
    with ops.client() as c:
        by_json = c.get_logs("ccfraud", partition="edge-json")["records"]
        by_arrow = c.get_logs("ccfraud", partition="edge-arrow")["records"]
    assert [r.pop("metadata.partition") for r in by_arrow] == ["edge-arrow"] * N
    assert [r.pop("metadata.partition") for r in by_json] == ["edge-json"] * N
    assert by_arrow == by_json


def test_an_arrow_page_sent_twice_or_overlapping_a_json_one_is_stored_once(ops, make_record, tmp_path):
    with enrolled_edge(ops, make_record, tmp_path) as edge:
        assert arrow_upload(edge, 0, flat_table(10)).json()["stored"] == 10
        assert arrow_upload(edge, 0, flat_table(10)).json()["duplicates"] == 10
        assert raw_upload(edge, {"edge": "edge-1", "seq_start": 5, "seq_end": 14,
                                 "records": [record(i) for i in range(5, 15)]}).json()["stored"] == 5
    with ops.client() as c:
        got = c.get_logs("ccfraud")["records"]
    assert [r["time"] - 1713880452318 for r in got] == list(range(15))


def test_bad_arrow_pages_are_refused(ops, make_record, tmp_path):
    with enrolled_edge(ops, make_record, tmp_path) as edge:
        cred = edge.ensure_enrolled().credential
        headers = {"Authorization": f"Bearer {cred}", "Content-Type": LOG_PAGE_MEDIA_TYPE}
        garbage = httpx.post(f"{edge.base_url}/logs", content=b"not arrow at all", headers=headers)
        wrong_time = arrow_upload(edge, 0, flat_table(2).set_column(0, "time", pa.array(["a", "b"])))
        short = httpx.post(f"{edge.base_url}/logs", headers=headers,
                           content=arrow_page_body("edge-1", 0, 9, flat_table(3)))
    assert garbage.status_code == 400 and "Arrow IPC" in garbage.json()["message"]
    assert wrong_time.status_code == 400 and "time" in wrong_time.json()["message"]
    assert short.status_code == 400 and "must number the 3 records" in short.json()["message"]
