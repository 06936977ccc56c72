"""The lean request path (issue 16): concurrent small requests on the event loop, their records group-committed
as one append, each still a record of its own; a request head past the bound refused on httptools; large JSON
answers encoded in slices that concatenate to the same bytes."""
from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import requests
from support.engine import RECORDS, encode, tensor_table

from engine.codecs import PANDAS_RECORDS, records_json
from engine.codecs.answer import CHUNK_ROWS, encode_chunks


def test_concurrent_single_rows_are_each_answered_and_each_a_record(engine):
    x = np.random.default_rng(16).normal(0, 1, (48, 29)).astype(np.float32)
    before = engine.get("/status").json()["logs"]["next_seq"]

    def one(i: int) -> list:
        with requests.Session() as s:
            r = s.post(engine.url + "/infer", data=encode(tensor_table(x[i:i + 1]), RECORDS),
                       headers={"Content-Type": RECORDS}, timeout=60)
            assert r.status_code == 200, r.text
            assert r.headers["server-timing"].startswith("engine;dur=")
            return r.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(len(x))))
    for i, records in enumerate(answers):
        assert len(records) == 1
        np.testing.assert_allclose(records[0]["in"]["tensor"], x[i], rtol=1e-6)
    logs = engine.get("/status").json()["logs"]
    assert logs["next_seq"] - before == len(x)
    stored = engine.post("/logs", json.dumps({"limit": len(x)}), "application/json").json()
    got = sorted(tuple(np.float32(v) for v in r["in"]["tensor"]) for r in stored)
    assert got == sorted(tuple(row) for row in x)


def test_a_request_head_past_the_bound_is_400_and_the_engine_keeps_serving(engine):
    host, port = engine.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * (20 * 1024) + b"\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert engine.get("/health").status_code == 200


def test_large_json_answers_come_in_slices_of_the_same_bytes():
    n = CHUNK_ROWS * 4 + 7
    x = np.random.default_rng(3).normal(0, 1, (n, 3)).astype(np.float32)
    table = pa.table({"in.tensor": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 3),
                      "metadata.partition": pa.repeat("edge-1", n), "anomaly.count": pa.array(np.arange(n))})
    chunks = encode_chunks(table, PANDAS_RECORDS)
    assert len(chunks) > 3 and max(len(c) for c in chunks) < len(records_json(table)) / 3
    assert b"".join(bytes(c) for c in chunks) == records_json(table)
    assert encode_chunks(table.slice(0, 5), PANDAS_RECORDS) == [records_json(table.slice(0, 5))]
