"""Scenario 4 — an edge offline until three times LOCAL_INFERENCE_STORAGE has been produced. Ops is stopped
after the edge is added, so the engine cannot even enroll; it serves on with LOCAL_INFERENCE_STORAGE=1Mi.
Pass: the store's segments never exceed the capacity (and the directory the capacity plus its fixed
overhead: the 64 KiB reserve and state.json); dropped + stored = produced, nothing lost; /infer's median latency
while dropping stays within 50% (or 5 ms) of its median before the store filled (the figures go to
docs/reliability.md; no tighter timing assertion on a shared CI box); once Ops is back, exactly the records still
stored reach it, once each."""
from __future__ import annotations

import json
import statistics
import time

import requests
from support.engine import ARROW_FILE, start_engine
from support.procs import free_port, wait_for
from support.reliability import add_edge, numbered_body, ops_ids, start_ops

CAPACITY = 2**20
ROWS = 20                 # per request
WINDOW = 100              # requests per latency window
FIXED_OVERHEAD = 64 * 1024 + 4096   # the store's reserve file and state.json


def dir_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def test_offline_until_three_times_the_capacity(published, tmp_path):
    port = free_port()
    ops = start_ops(tmp_path / "ops", port=port)
    bundle = add_edge(ops, published, "offline")
    ops.stop()
    persist = tmp_path / "persist"
    engine = start_engine(published["pipeline_url"], persist, EDGE_BUNDLE=bundle,
                          LOCAL_INFERENCE_STORAGE="1Mi", PLATEAU_PAGE_SIZE="50")
    session = requests.Session()
    latencies: list[float] = []

    def infer(i: int) -> None:
        t0 = time.perf_counter()
        r = session.post(engine.url + "/infer", data=numbered_body(i * ROWS, ROWS),
                         headers={"Content-Type": ARROW_FILE}, timeout=30)
        latencies.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text

    try:
        for i in range(WINDOW):
            infer(i)
        status = engine.get("/status").json()
        assert status["logs"]["records_dropped"] == 0, "the first window must not be dropping yet: lower WINDOW"
        per_record = status["logs"]["bytes_stored"] / status["logs"]["next_seq"]
        requests_made = int(3 * CAPACITY / per_record / ROWS) + 1
        peak_dir = 0
        for i in range(WINDOW, requests_made):
            infer(i)
            if i % 50 == 0:
                peak_dir = max(peak_dir, dir_bytes(persist / "logs"))
        status = engine.get("/status").json()
        assert engine.get("/ready").status_code == 200
        assert status["upload"]["state"] == "enrolling" and not status["upload"]["enrolled"]

        logs = status["logs"]
        produced = requests_made * ROWS
        assert logs["next_seq"] == produced
        assert logs["records_dropped"] + logs["records_stored"] == produced
        assert logs["records_lost"] == 0 and logs["records_acked"] == 0 and logs["records_dropped"] > 0
        assert logs["bytes_stored"] <= CAPACITY
        assert peak_dir <= CAPACITY + FIXED_OVERHEAD, peak_dir
        before = statistics.median(latencies[:WINDOW])
        dropping = statistics.median(latencies[-WINDOW:])
        assert dropping <= max(1.5 * before, before + 0.005), (before, dropping)

        stored = logs["records_stored"]
        ops = start_ops(tmp_path / "ops", port=port)   # the same database: Ops is back
        try:
            wait_for("the stored records to reach Ops",
                     lambda: engine.get("/status").json()["logs"]["records_stored"] == 0, timeout=90, every=0.5)
            in_ops = ops_ids(ops, "edge-pipeline", "offline")
        finally:
            ops.stop()
    finally:
        engine.stop()
    assert len(in_ops) == len(set(in_ops)) == stored
    assert set(in_ops) == set(range(produced - stored, produced)), "the newest records are the ones kept"
    print(f"\noffline: {produced} records ({produced * per_record / 2**20:.1f} MiB) into a 1 MiB store: "
          f"{logs['records_dropped']} dropped, {stored} stored ({logs['bytes_stored']} bytes, directory peak "
          f"{peak_dir}); /infer median {before * 1e3:.2f} ms before the store filled, {dropping * 1e3:.2f} ms "
          f"while dropping; {len(in_ops)} delivered once Ops was back; {json.dumps(logs)}")
