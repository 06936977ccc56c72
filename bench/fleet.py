"""Fleet benchmark (issue 19): N simulated edges speaking the real upload protocol against one `joey-ops`.

    .venv/bin/python -m bench.fleet [--quick]

Each edge is added (admin API), enrols with its bundle's join token, checks in, then sends Arrow pages of the
log store's shape (engine.edge_client.arrow_page_body) with a bounded number of uploads in flight. Reported per
fleet size: records/s ingested, page latency p50/p99, database bytes per record (pg_total_relation_size of the
logs partitions) and whether every (edge, seq) is stored exactly once. A single-process ingest figure (Arrow
pages of 1,000 records) is measured on PostgreSQL and on SQLite. PostgreSQL is a throwaway cluster (fsync off,
as in the tests). Results: bench/results/fleet.json and fleet.md.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import requests

from bench.common import RESULTS, ROOT, machine
from engine.edge_client import arrow_page_body
from joey.bundle import EdgeBundle
from joey.opswire import LOG_PAGE_MEDIA_TYPE

# The test suite's process helpers start Ops exactly as the tests do (one way to start it, not two).
sys.path.insert(0, str(ROOT / "tests"))
from support.ops import start_ops  # noqa: E402
from support.procs import free_port  # noqa: E402

TARGETS = {"pg_records_per_s": 50_000, "sqlite_records_per_s": 10_000, "p99_ms_1000_edges": 250}
IN_FLIGHT = 64


def page_table(n: int) -> pa.Table:
    """n records shaped as the engine logs the ccfraud example: 29 float32 inputs, one output, metadata."""
    rng = np.random.default_rng(0)
    return pa.table({
        "time": pa.array(1_713_880_452_318 + np.arange(n, dtype=np.int64)),
        "in.tensor": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(n * 29, dtype=np.float32)), 29),
        "out.variable": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(n, dtype=np.float32)), 1),
        "anomaly.count": pa.array(np.zeros(n, dtype=np.int64)),
        "metadata.last_model": pa.array(['{"model_name":"ccfraud","model_sha":"' + "e2" * 32 + '"}'] * n),
        "metadata.pipeline_version": pa.array(["76bec2c1"] * n),
        "metadata.elapsed": pa.array([[15654000, 17385666]] * n, pa.list_(pa.int64())),
        "metadata.partition": pa.array(["bench"] * n),
    })


def start_postgres(root: Path) -> tuple[str, Path]:
    """A throwaway cluster on a free loopback port (trust auth, fsync off): its URL and data directory."""
    binary = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1].rsplit("/", 1)[0]
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run([*as_pg, f"{binary}/initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*as_pg, f"{binary}/pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                    f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off", "start"], check=True, capture_output=True)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", data


def stop_postgres(data: Path) -> None:
    binary = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_pg, binary, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)


class Edge:
    def __init__(self, ops, publish_id: int, name: str):
        with ops.client() as c:
            self.bundle = EdgeBundle.decode(c.add_edge(publish_id, name)["docker_run_variables"]["EDGE_BUNDLE"])
        self.name, self.http = name, requests.Session()

    def enrol(self) -> None:
        answer = self.http.post(f"{self.bundle.opscenter_url}/join", timeout=60,
                                json={"edge": self.name, "join_token": self.bundle.join_token})
        answer.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {answer.json()['credential']}"
        self.http.post(f"{self.bundle.opscenter_url}/checkin", timeout=60, json={
            "edge": self.name, "serving": {"pipeline_url": "-", "pipeline_digest": "-", "pipeline_version": "-"}}
        ).raise_for_status()

    def send(self, body: bytes) -> float:
        """One page, timed; sent again (as the uploader would) when Ops had closed the idle keep-alive
        connection this edge's session was about to reuse."""
        t = time.perf_counter()
        try:
            r = self.http.post(f"{self.bundle.opscenter_url}/logs", data=body, timeout=60,
                               headers={"Content-Type": LOG_PAGE_MEDIA_TYPE})
        except requests.ConnectionError:
            t = time.perf_counter()
            r = self.http.post(f"{self.bundle.opscenter_url}/logs", data=body, timeout=60,
                               headers={"Content-Type": LOG_PAGE_MEDIA_TYPE})
        r.raise_for_status()
        return time.perf_counter() - t


def run_fleet(ops, edges: int, pages: int, records: int, tag: str) -> dict:
    with ops.client() as c:
        publish_id = c.publish(_record(tag))["id"]
    fleet = [Edge(ops, publish_id, f"{tag}-{i}") for i in range(edges)]
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        list(pool.map(Edge.enrol, fleet))
    table = page_table(records)
    jobs = [(e, arrow_page_body(e.name, p * records, (p + 1) * records - 1, table))
            for p in range(pages) for e in fleet]
    t = time.perf_counter()
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        latencies = list(pool.map(lambda job: job[0].send(job[1]), jobs))
    elapsed = time.perf_counter() - t
    for e in fleet:
        e.http.close()
    total = edges * pages * records
    return {"edges": edges, "pages": len(jobs), "records_per_page": records, "records": total,
            "records_per_s": round(total / elapsed), "page_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
            "page_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1), **_stored(ops, tag, total)}


def _stored(ops, tag: str, expected: int) -> dict:
    """Counted in the database: every (edge, seq) once, none missing; bytes per record on PostgreSQL."""
    if not ops.database_url.startswith("postgresql"):
        import sqlite3

        with sqlite3.connect(ops.database_url[len("sqlite:///"):]) as conn:
            rows, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT edge_id || ':' || seq) FROM logs"
                                          " WHERE pipeline_name = ?", (tag,)).fetchone()
        return {"stored": rows, "distinct": distinct, "exact": rows == distinct == expected}
    import psycopg

    with psycopg.connect(ops.database_url) as conn:
        rows, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT (edge_id, seq)) FROM logs"
                                      " WHERE pipeline_name = %s", (tag,)).fetchone()
        size, total = conn.execute("SELECT (SELECT COALESCE(SUM(pg_total_relation_size(inhrelid)), 0)"
                                   " FROM pg_inherits WHERE inhparent = 'logs'::regclass), COUNT(*) FROM logs"
                                   ).fetchone()
    return {"stored": rows, "distinct": distinct, "exact": rows == distinct == expected,
            "db_bytes_per_record": round(size / max(1, total)), "parquet_bytes_per_record": "n/a"}


def _record(name: str) -> dict:
    version = secrets.token_hex(4)
    return {"pipeline_name": name, "pipeline_version": version,
            "pipeline_url": f"127.0.0.1:5000/joey/pipelines/{name}:{version}", "pipeline_digest": "sha256:" + "ab" * 32,
            "engine_config": {"engine": {"resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}},
            "docker_run_variables": {}, "replaces": [], "user_images": []}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer pages: a smoke run, not figures to report")
    args = p.parse_args()
    scale = 0.2 if args.quick else 1.0
    root = Path(tempfile.mkdtemp(prefix="joey-fleet-"))
    pg_url, data = start_postgres(root)
    results: dict = {"machine": machine(), "load_average_before": os.getloadavg(), "targets": TARGETS}
    try:
        ops = start_ops(pg_url, root)
        results["single_pg"] = run_fleet(ops, 8, max(2, int(25 * scale)), 1000, "single")
        for n, pages, size in ((10, max(2, int(20 * scale)), 1000), (100, max(1, int(4 * scale)), 1000),
                               (1000, 2, max(50, int(250 * scale)))):
            results[f"fleet_{n}"] = run_fleet(ops, n, pages, size, f"fleet{n}")
        ops.stop()
        lite = start_ops(f"sqlite:///{root}/ops.db", root)
        results["single_sqlite"] = run_fleet(lite, 8, max(2, int(25 * scale)), 1000, "single")
        lite.stop()
    finally:
        stop_postgres(data)
        shutil.rmtree(root, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()
    results["met"] = {"pg_records_per_s": results["single_pg"]["records_per_s"] >= TARGETS["pg_records_per_s"],
                      "sqlite_records_per_s":
                          results["single_sqlite"]["records_per_s"] >= TARGETS["sqlite_records_per_s"],
                      "p99_ms_1000_edges": results["fleet_1000"]["page_p99_ms"] <= TARGETS["p99_ms_1000_edges"],
                      "exact": all(v["exact"] for k, v in results.items() if isinstance(v, dict) and "exact" in v)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "fleet.md").write_text(report(results))
    print(report(results))


def report(r: dict) -> str:
    lines = ["| run | edges | records/page | records/s | page p50 ms | page p99 ms | DB bytes/record | "
             "Parquet bytes/record | exactly once |", "|---|---|---|---|---|---|---|---|---|"]
    for key in ("single_pg", "single_sqlite", "fleet_10", "fleet_100", "fleet_1000"):
        v = r[key]
        lines.append(f"| {key} | {v['edges']} | {v['records_per_page']} | {v['records_per_s']:,} | "
                     f"{v['page_p50_ms']} | {v['page_p99_ms']} | {v.get('db_bytes_per_record', '-')} | "
                     f"{v.get('parquet_bytes_per_record', '-')} | {v['exact']} |")
    met = r["met"]
    lines += ["", f"Load average before/after: {r['load_average_before']} / {r['load_average_after']} "
              f"({r['machine']['cores']} cores).", "",
              f"- PostgreSQL ingest >= 50,000 records/s: {'met' if met['pg_records_per_s'] else 'not met'}",
              f"- SQLite ingest >= 10,000 records/s: {'met' if met['sqlite_records_per_s'] else 'not met'}",
              f"- 1,000 edges page p99 <= 250 ms: {'met' if met['p99_ms_1000_edges'] else 'not met'}",
              f"- nothing lost, nothing duplicated: {'met' if met['exact'] else 'not met'}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
