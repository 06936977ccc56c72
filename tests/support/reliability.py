"""Shared pieces of the reliability scenarios: numbered requests, process gauges, a joey-ops process."""
from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import requests

from joey.opsclient import OpsClient
from support.engine import ARROW_FILE, encode, tensor_table
from support.procs import free_port, start, stop, wait_http
from support.proxy import Proxy

JOEY_OPS = str(Path(sys.executable).with_name("joey-ops"))


# ---- requests whose records can be told apart -----------------------------------------------------------

def numbered_body(first_id: int, rows: int = 1) -> bytes:
    """An Arrow-file /infer body whose row i carries the id first_id + i as its first feature (exact in
    float32 below 2**24), so a record found in the local store or in Ops names the request it came from."""
    x = np.zeros((rows, 29), np.float32)
    x[:, 0] = np.arange(first_id, first_id + rows, dtype=np.float32)
    x[:, 1:] = np.random.default_rng(first_id).normal(0, 1, (rows, 28))
    return encode(tensor_table(x), ARROW_FILE)


def ids_of_table(table: pa.Table) -> list[int]:
    """The ids of records read back from the engine's log store (Arrow, flat columns)."""
    if "in.tensor" not in table.column_names:   # an empty store has no schema
        assert table.num_rows == 0
        return []
    return [int(row[0]) for row in table.column("in.tensor").to_pylist()]


def ids_of_records(records: list[dict]) -> list[int]:
    """The ids of records as Ops' get_logs gives them (flattened: `in.tensor`)."""
    return [int(r["in.tensor"][0]) for r in records]


# ---- process gauges from /proc ------------------------------------------------------------------------------

def page_seq_start(body: bytes) -> int:
    """seq_start of an upload page as the engine sends it: Arrow IPC with the numbers in the schema's metadata,
    or the JSON page Ops also accepts."""
    if body[:1] == b"{":
        return int(json.loads(body)["seq_start"])
    return int(pa.ipc.open_stream(body).schema.metadata[b"joey.seq_start"])


def ids_of_page(body: bytes) -> list[int]:
    """The ids of the records in an upload page (Arrow IPC, or JSON with nested `in`)."""
    if body[:1] == b"{":
        return [int(r["in"]["tensor"][0]) for r in json.loads(body)["records"]]
    return ids_of_table(pa.ipc.open_stream(body).read_all())


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


# ---- joey-ops ----------------------------------------------------------------------------------------------

@dataclass
class Ops:
    url: str
    token: str
    database: Path
    log: Path
    proc: object

    def client(self) -> OpsClient:
        return OpsClient(self.url, self.token)

    def stop(self) -> None:
        stop(self.proc)


def start_ops(workdir: Path, *, port: int | None = None, public_url: str | None = None,
              log_level: str = "info") -> Ops:
    """A joey-ops process over a SQLite file. `public_url` is what bundles name (a proxy in front, say)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, token = port or free_port(), secrets.token_urlsafe(24)
    db, log = workdir / "ops.db", workdir / "joey-ops.log"
    args = [JOEY_OPS, "--host", "127.0.0.1", "--port", str(port), "--database", f"sqlite:///{db}",
            "--log-level", log_level]
    if public_url:
        args += ["--public-url", public_url]
    proc = start(args, log, env={"JOEY_OPS_TOKEN": token}, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc=proc, log=log)
    return Ops(url, token, db, log, proc)


@contextmanager
def ops_behind_proxy(workdir: Path, decide=None) -> Iterator[tuple[Ops, Proxy]]:
    """joey-ops with a Proxy (deciding with `decide`) in front; the bundles it hands out name the proxy."""
    port = free_port()
    with Proxy(f"127.0.0.1:{port}", decide) as proxy:
        ops = start_ops(workdir, port=port, public_url=proxy.url)
        try:
            yield ops, proxy
        finally:
            ops.stop()


def add_edge(ops: Ops, record: dict, name: str) -> str:
    """Record the packager's publish in Ops (once per pipeline version) and add an edge: its EDGE_BUNDLE."""
    with ops.client() as c:
        pubs = [p for p in c.list_publishes(record["pipeline_name"])["publishes"]
                if p["pipeline_version"] == record["pipeline_version"]]
        pub = pubs[0] if pubs else c.publish(record)
        return c.add_edge(pub["id"], name)["docker_run_variables"]["EDGE_BUNDLE"]


def ops_ids(ops: Ops, pipeline: str, partition: str | None = None) -> list[int]:
    """The ids of every record Ops holds for the pipeline (or one edge), duplicates included."""
    with ops.client() as c:
        return ids_of_records(list(c.iter_logs(pipeline, partition=partition, page_size=10_000)))


def upload_status(engine) -> dict:
    return requests.get(engine.url + "/status", timeout=10).json()["upload"]
