"""Logs rolled into Parquet in a real S3 API (moto's server on loopback), and read back: through get_logs across
the hot window and the files, and through DuckDB over the objects, downloaded (httpfs is not installable
offline)."""
from __future__ import annotations

import secrets
import sys
import threading
import time
from pathlib import Path

import boto3
import duckdb
import pytest
import uvicorn
from support.ops import JOEY_OPS, OpsServer
from support.procs import free_port, start, stop, wait_for, wait_http

from engine.edge_client import EdgeClient
from joey.bundle import EdgeBundle
from opscenter.app import create_app
from opscenter.db import Database
from opscenter.objectstore import ObjectStoreSettings
from opscenter.rollup import LEASE_S, Rollup, RollupSettings

BUCKET = "joey-logs"
PREFIX = "fleet/logs"
KEY_ID, SECRET_KEY = "AKIAJOEYTEST", f"secret-{secrets.token_hex(8)}"
HOUR = 3600.0


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on a free loopback port, with an empty bucket."""
    port, log = free_port(), tmp_path_factory.mktemp("moto") / "moto.log"
    proc = start([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)], log)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{endpoint}/", proc=proc, log=log, ok=(200, 403, 404))
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY_ID,
                              aws_secret_access_key=SECRET_KEY, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client
    finally:
        stop(proc)


def store(endpoint: str, bucket: str = BUCKET) -> ObjectStoreSettings:
    return ObjectStoreSettings(endpoint, bucket, PREFIX, access_key_id=KEY_ID, secret_access_key=SECRET_KEY)


def empty(client) -> None:
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])


class Clock:
    """The time Ops and the roll-ups see: moved by the tests, from noon (UTC) today, so that the two hours the
    tests move it stay within one day."""

    def __init__(self) -> None:
        self.now = time.time() // 86400 * 86400 + 12 * HOUR

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def fleet(s3, database_url):
    """Ops served in this process on a settable clock, rolling into the bucket (its own background round far
    off: the tests run rounds themselves, as another replica would)."""
    endpoint, client = s3
    empty(client)
    port, token, clock = free_port(), secrets.token_urlsafe(24), Clock()
    url = f"http://127.0.0.1:{port}"
    settings = RollupSettings(store(endpoint), hot_hours=1, hot_records=20, interval_s=3600)
    app = create_app(database_url, token, url, clock=clock, rollup=settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_http(f"{url}/healthz")
        yield OpsServer(url, token, database_url), clock, settings, client
    finally:
        server.should_exit = True
        thread.join(30)


def reading(i: int) -> dict:
    return {"time": 1713880452318 + i, "in": {"tensor": [float(i), 1.0]}, "out": {"variable": [i * 0.25]},
            "anomaly": {"count": i % 3}, "metadata": {"pipeline_version": "v1"}}


def edges(server: OpsServer, record: dict, tmp_path: Path, names: tuple[str, ...]) -> dict[str, EdgeClient]:
    with server.client() as c:
        pub = c.publish(record)
        return {n: EdgeClient(EdgeBundle.decode(c.add_edge(pub["id"], n)["docker_run_variables"]["EDGE_BUNDLE"]),
                              tmp_path / n) for n in names}


def everything(server: OpsServer, limit: int, partition: str | None = None) -> list[dict]:
    """All of the pipeline's records, page by page."""
    got, after = [], 0
    with server.client() as c:
        while True:
            page = c.get_logs("ccfraud", partition=partition, limit=limit, after=after)
            got += page["records"]
            if page["next"] is None:
                return got
            after = page["next"]


def db_rows(database_url: str) -> dict[str, int]:
    db = Database(database_url)
    try:
        with db.transaction() as tx:
            return {r["partition"]: r["n"] for r in tx.all("SELECT partition, COUNT(*) AS n FROM logs"
                                                           " GROUP BY partition")}
    finally:
        db.close()


def ingest(server, make_record, clock, tmp_path) -> list[dict]:
    """edge-1 sends 50 records, two hours later 10 more, with edge-2's 30: what get_logs answers then."""
    clients = edges(server, make_record("ccfraud"), tmp_path, ("edge-1", "edge-2"))
    with clients["edge-1"] as one, clients["edge-2"] as two:
        for start_seq in range(0, 50, 10):
            one.upload_page(start_seq, start_seq + 9, [reading(i) for i in range(start_seq, start_seq + 10)])
        clock.now += 2 * HOUR
        one.upload_page(50, 59, [reading(i) for i in range(50, 60)])
        two.upload_page(0, 29, [reading(100 + i) for i in range(30)])
    return everything(server, 1000)


def test_rolled_logs_read_back_through_get_logs_and_duckdb(fleet, make_record, tmp_path):
    server, clock, settings, client = fleet
    before = ingest(server, make_record, clock, tmp_path)
    assert len(before) == 90

    replica = Rollup(Database(server.database_url), settings, clock)
    # edge-1's first 50 are past the hour; edge-2 holds 10 over the 20 the database keeps per partition.
    assert replica.run_once() == 60
    assert replica.run_once() == 0
    assert db_rows(server.database_url) == {"edge-1": 10, "edge-2": 20}

    # get_logs answers as before, across the files and the database, page by page and per edge.
    for limit in (1000, 7, 50):
        assert everything(server, limit) == before
    assert everything(server, 9, partition="edge-2") == [r for r in before if r["metadata.partition"] == "edge-2"]

    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert len(keys) == 2
    day = time.strftime("%Y-%m-%d", time.gmtime(clock.now - 2 * HOUR))
    for key, edge in zip(keys, ("edge-1", "edge-2"), strict=True):
        assert key.startswith(f"{PREFIX}/pipeline=ccfraud/partition={edge}/date=") and key.endswith(".parquet")
    downloads = tmp_path / "downloads"
    for key in keys:
        (downloads / key).parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, key, str(downloads / key))
    con = duckdb.connect()
    files = f"read_parquet('{downloads}/{PREFIX}/pipeline=*/partition=*/date=*/*.parquet', hive_partitioning=true)"
    counts = con.sql(f"SELECT pipeline, partition, count(*), min(seq), max(seq) FROM {files}"
                     " GROUP BY ALL ORDER BY partition").fetchall()
    assert counts == [("ccfraud", "edge-1", 50, 0, 49), ("ccfraud", "edge-2", 10, 0, 9)]
    values = con.sql(f"SELECT partition, seq, time, json_extract(record, '$.out.variable[0]')::DOUBLE, "
                     f"json_extract_string(record, '$.metadata.partition'), CAST(date AS VARCHAR) FROM {files}"
                     " ORDER BY partition, seq").fetchall()
    offsets = [*range(50), *range(100, 110)]
    assert [v[:5] for v in values] == [(p, s, 1713880452318 + i, i * 0.25, p)
                                       for p, s, i in zip(["edge-1"] * 50 + ["edge-2"] * 10,
                                                          [*range(50), *range(10)], offsets, strict=True)]
    assert {v[5] for v in values} == {day}


def test_a_batch_left_by_a_dead_replica_is_finished_by_another(fleet, make_record, tmp_path):
    server, clock, settings, client = fleet
    before = ingest(server, make_record, clock, tmp_path)
    dead = Rollup(Database(server.database_url), settings, clock)
    left = dead._claim()              # named its first batch, then "died" before writing it
    assert left is not None
    other = Rollup(Database(server.database_url), settings, clock)
    assert other.run_once() == 10     # the other partition's batch; the dead replica's is still under its lease
    clock.now += LEASE_S + 1
    assert other.run_once() == 50
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert left["key"] in keys and len(keys) == 2, "the batch was written under the key the dead replica named"
    assert everything(server, 13) == before


def test_an_unreachable_store_keeps_the_logs_in_the_database(fleet, make_record, tmp_path):
    server, clock, settings, client = fleet
    before = ingest(server, make_record, clock, tmp_path)
    broken = RollupSettings(store(settings.store.endpoint, bucket="no-such-bucket"), settings.hot_hours,
                            settings.hot_records)
    assert Rollup(Database(server.database_url), broken, clock).run_once() == 0
    assert db_rows(server.database_url) == {"edge-1": 60, "edge-2": 30}
    assert everything(server, 1000) == before


def test_joey_ops_rolls_up_on_its_own_and_never_logs_the_secret(s3, tmp_path, make_record):
    endpoint, client = s3
    empty(client)
    port, token = free_port(), secrets.token_urlsafe(24)
    database_url = f"sqlite:///{tmp_path}/ops.db"
    log = tmp_path / "joey-ops.log"
    proc = start([JOEY_OPS, "--port", str(port), "--database", database_url, "--log-level", "debug",
                  "--s3-endpoint", endpoint, "--s3-bucket", BUCKET, "--hot-records", "5", "--rollup-interval", "0.2"],
                 log, env={"JOEY_OPS_TOKEN": token, "JOEY_OPS_S3_PREFIX": PREFIX, "AWS_ACCESS_KEY_ID": KEY_ID,
                           "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    try:
        server = OpsServer(f"http://127.0.0.1:{port}", token, database_url)
        wait_http(f"{server.url}/healthz", proc=proc, log=log)
        with edges(server, make_record("ccfraud"), tmp_path, ("edge-1",))["edge-1"] as edge:
            edge.upload_page(0, 11, [reading(i) for i in range(12)])
        wait_for("7 records rolled up", lambda: db_rows(database_url) == {"edge-1": 5})
        assert [r["time"] - 1713880452318 for r in everything(server, 4)] == list(range(12))
        assert client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/pipeline=ccfraud/")["KeyCount"] == 1
    finally:
        stop(proc)
    assert SECRET_KEY not in log.read_text()
