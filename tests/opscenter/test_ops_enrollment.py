"""Enrollment: the JOIN_TOKEN works exactly once, within 24 h, for its own edge; the session credential lives
while the edge keeps in touch and dies with the edge. Real servers, both databases, EdgeClient as the edge."""
from __future__ import annotations

import json
import logging
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from support.procs import free_port

from engine.edge_client import CREDENTIAL_FILE, EdgeClient, OpsRejected, OpsRetryable
from joey.bundle import REPLACE_PLACEHOLDER, BundleError, EdgeBundle
from joey.errors import Unauthorized
from joey.opswire import AddEdge, PublishRecord
from opscenter.db import Database
from opscenter.schema import STATEMENTS
from opscenter.service import OpsService

DAY = 24 * 3600.0
RECORD = {"time": 1713880452318, "in": {"tensor": [1.0, 2.0]}, "out": {"variable": [0.5]},
          "anomaly": {"count": 0}, "metadata": {"pipeline_version": "v1", "elapsed": [1, 2], "dropped": []}}


def add_edge(server, make_record, name: str = "edge-1", pipeline: str = "ccfraud") -> EdgeBundle:
    with server.client() as c:
        pub = c.publish(make_record(pipeline))
        return EdgeBundle.decode(c.add_edge(pub["id"], name)["docker_run_variables"]["EDGE_BUNDLE"])


def join(server, edge: str, token: str) -> httpx.Response:
    return httpx.post(f"{server.url}/edge/join", json={"edge": edge, "join_token": token})


def test_fifty_concurrent_enrolments_with_one_token_have_one_winner(ops, make_record, tmp_path):
    bundle = add_edge(ops, make_record)

    def enroll(i: int):
        with EdgeClient(bundle, tmp_path / f"persist-{i}") as client:
            try:
                return client.ensure_enrolled()
            except OpsRejected as e:
                return e

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(enroll, range(50)))
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(winners) == 1
    assert all("already used" in str(o) for o in outcomes if isinstance(o, Exception))
    assert sum((tmp_path / f"persist-{i}" / CREDENTIAL_FILE).exists() for i in range(50)) == 1
    with ops.client() as c:
        assert c.list_edges()[0]["enrolled"] is True and c.list_edges()[0]["last_seen"] is not None


def test_racing_trades_in_the_service_have_one_winner(database_url, make_record):
    """The same race without HTTP in between: the server's event loop spaces requests out by milliseconds,
    threads calling the service meet inside the database (a read-then-write check fails this on PostgreSQL)."""
    db = Database(database_url, max_connections=50)
    db.create_schema(STATEMENTS)
    service = OpsService(db, "http://127.0.0.1:1", time.time)
    pub = service.publish(PublishRecord.model_validate(make_record("ccfraud")))
    added = service.add_edge(AddEdge(pipeline_publish_id=pub["id"], name="edge-1"))
    token = EdgeBundle.decode(added["docker_run_variables"]["EDGE_BUNDLE"]).join_token
    barrier = threading.Barrier(50)

    def trade(_: int) -> bool:
        barrier.wait()
        try:
            return bool(service.join("edge-1", token))
        except Unauthorized:
            return False

    try:
        with ThreadPoolExecutor(50) as pool:
            assert sum(pool.map(trade, range(50))) == 1
    finally:
        db.close()


def test_a_token_is_single_use(ops, make_record):
    b = add_edge(ops, make_record)
    first = join(ops, b.edge_name, b.join_token)
    assert first.status_code == 200 and first.json()["spiffe_id"] == "spiffe://127.0.0.1/edge/edge-1"
    again = join(ops, b.edge_name, b.join_token)
    assert again.status_code == 401 and "already used" in again.json()["message"]


def test_wrong_tokens_are_refused_and_burn_nothing(ops, make_record):
    a = add_edge(ops, make_record, "edge-a")
    b = add_edge(ops, make_record, "edge-b", pipeline="houseprice")
    for edge, token in [("edge-a", a.join_token[:-1]), ("edge-a", a.join_token + "x"), ("edge-a", ""),
                        ("edge-a", "x" * 1000), ("edge-a", b.join_token), ("edge-b", a.join_token),
                        ("no-such-edge", a.join_token)]:
        r = join(ops, edge, token)
        assert r.status_code == 401 and "join token refused" in r.json()["message"], (edge, len(token))
    assert join(ops, "edge-a", a.join_token).status_code == 200
    assert join(ops, "edge-b", b.join_token).status_code == 200


def test_a_late_token_is_refused_and_burned(clocked_ops, make_record):
    b = add_edge(clocked_ops, make_record)
    clocked_ops.clock.advance(DAY + 1)
    late = join(clocked_ops, b.edge_name, b.join_token)
    assert late.status_code == 401 and "expired" in late.json()["message"]
    clocked_ops.clock.advance(-2)  # even back inside the 24 h, the token stays burned
    again = join(clocked_ops, b.edge_name, b.join_token)
    assert again.status_code == 401 and "already used" in again.json()["message"]


def test_a_token_is_good_for_24_hours(clocked_ops, make_record):
    b = add_edge(clocked_ops, make_record)
    clocked_ops.clock.advance(DAY - 1)
    assert join(clocked_ops, b.edge_name, b.join_token).status_code == 200


def test_the_credential_lives_while_the_edge_keeps_in_touch(clocked_ops, make_record, tmp_path):
    b = add_edge(clocked_ops, make_record)
    with EdgeClient(b, tmp_path) as edge:
        edge.upload_page(0, 0, [RECORD])
        for seq in range(1, 4):  # three contacts 6 days apart: 18 days in all
            clocked_ops.clock.advance(6 * DAY)
            edge.upload_page(seq, seq, [RECORD])
        clocked_ops.clock.advance(7 * DAY + 1)
        with pytest.raises(OpsRejected, match="expired: no contact for over 7 days"):
            edge.upload_page(4, 4, [RECORD])


def test_removing_the_edge_revokes_its_credential_at_once(ops, make_record, tmp_path):
    b = add_edge(ops, make_record)
    with EdgeClient(b, tmp_path) as edge:
        edge.upload_page(0, 0, [RECORD])
        with ops.client() as c:
            c.remove_edge("edge-1")
        with pytest.raises(OpsRejected, match="401 unknown or revoked edge credential"):
            edge.upload_page(1, 1, [RECORD])


def test_restarted_engine_reuses_its_credential_without_the_token(ops, make_record, tmp_path, caplog):
    b = add_edge(ops, make_record)
    with caplog.at_level(logging.INFO, logger="joey.engine"), EdgeClient(b, tmp_path) as first:
        cred = first.ensure_enrolled()
    assert "Node attestation was successful" in caplog.text
    path = tmp_path / CREDENTIAL_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["credential"] == cred.credential
    assert b.join_token not in path.read_text()
    # The token is burned now, so these only work if the stored credential is used and the token is not.
    for bundle in (b, replace(b, join_token=REPLACE_PLACEHOLDER)):
        with EdgeClient(bundle, tmp_path) as restarted:
            assert restarted.ensure_enrolled() == cred
            restarted.upload_page(0, 0, [RECORD])


def test_an_edge_added_again_enrolls_afresh_over_its_old_credential(ops, make_record, tmp_path):
    b = add_edge(ops, make_record)
    with EdgeClient(b, tmp_path) as edge:
        old = edge.ensure_enrolled()
    with ops.client() as c:
        pub_id = c.list_edges()[0]["publish_id"]
        c.remove_edge("edge-1")
        b2 = EdgeBundle.decode(c.add_edge(pub_id, "edge-1")["docker_run_variables"]["EDGE_BUNDLE"])
    with EdgeClient(b2, tmp_path) as edge:
        new = edge.ensure_enrolled()
        assert new.credential != old.credential
        edge.upload_page(0, 0, [RECORD])


def test_replace_bundle_without_a_stored_credential_is_rejected(ops, make_record, tmp_path):
    b = add_edge(ops, make_record)
    with EdgeClient(replace(b, join_token=REPLACE_PLACEHOLDER), tmp_path) as edge:
        with pytest.raises(OpsRejected, match="carries no join token"):
            edge.ensure_enrolled()


def test_a_corrupt_credential_file_is_a_clear_error(ops, make_record, tmp_path):
    b = add_edge(ops, make_record)
    (tmp_path / CREDENTIAL_FILE).parent.mkdir(parents=True)
    (tmp_path / CREDENTIAL_FILE).write_text("{not json")
    with EdgeClient(b, tmp_path) as edge, pytest.raises(OpsRejected, match="credential.json is unreadable"):
        edge.ensure_enrolled()


def test_the_database_holds_no_plaintext_secret(ops, backend, make_record, tmp_path, request):
    import hashlib

    b = add_edge(ops, make_record)
    with EdgeClient(b, tmp_path / "persist") as edge:
        credential = edge.ensure_enrolled().credential
        edge.upload_page(0, 0, [RECORD])
    if backend == "sqlite":
        files = list(Path(ops.database_url.removeprefix("sqlite:///")).parent.iterdir())
    else:
        cluster = request.getfixturevalue("pg_cluster")
        cluster.admin("CHECKPOINT")
        files = [p for p in cluster.data_dir.rglob("*") if p.is_file()]
    data = b"".join(_read_if_there(p) for p in files)
    # the digests are there, so the search looks where the secrets would be
    assert hashlib.sha256(b.join_token.encode()).hexdigest().encode() in data
    assert hashlib.sha256(credential.encode()).hexdigest().encode() in data
    assert b.join_token.encode() not in data
    assert credential.encode() not in data
    assert ops.token.encode() not in data


def test_unreachable_ops_is_retryable(make_record, tmp_path):
    b = EdgeBundle(edge_name="edge-1", opscenter_host=f"http://127.0.0.1:{free_port()}/edge",
                   pipeline_url="r/p:v", join_token="t" * 43)
    with EdgeClient(b, tmp_path) as edge, pytest.raises(OpsRetryable, match="cannot enroll now"):
        edge.ensure_enrolled()
    assert not (tmp_path / CREDENTIAL_FILE).exists()


def test_a_silent_ops_is_retryable(tmp_path):
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        b = EdgeBundle(edge_name="edge-1", opscenter_host=f"http://127.0.0.1:{listener.getsockname()[1]}/edge",
                       pipeline_url="r/p:v", join_token="t" * 43)
        with EdgeClient(b, tmp_path, timeout=0.5) as edge, pytest.raises(OpsRetryable, match="timed out"):
            edge.ensure_enrolled()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_database_outage_is_a_retryable_503(clocked_ops, make_record, tmp_path, pg_cluster):
    b = add_edge(clocked_ops, make_record)
    with EdgeClient(b, tmp_path) as edge:
        edge.ensure_enrolled()
        database = clocked_ops.database_url.rsplit("/", 1)[1]
        pg_cluster.admin(f"DROP DATABASE {database} WITH (FORCE)")
        with pytest.raises(OpsRetryable, match="503 database unavailable"):
            edge.upload_page(0, 0, [RECORD])


@pytest.mark.parametrize("host,url", [
    ("ops.example.com/edge", "https://ops.example.com/edge"),
    ("https://ops.example.com:8443/edge", "https://ops.example.com:8443/edge"),
    ("http://127.0.0.1:8090/edge", "http://127.0.0.1:8090/edge"),
    ("http://localhost:8090/edge", "http://localhost:8090/edge"),
    ("http://127.0.0.2:8090/edge", "http://127.0.0.2:8090/edge"),
])
def test_opscenter_host_scheme(host, url, tmp_path):
    b = EdgeBundle(edge_name="edge-1", opscenter_host=host, pipeline_url="r/p:v", join_token="t")
    with EdgeClient(b, tmp_path) as edge:
        assert edge.base_url == url


def test_plain_http_to_a_remote_ops_is_refused():
    with pytest.raises(BundleError, match="plain http:// only to a loopback host"):
        EdgeBundle(edge_name="edge-1", opscenter_host="http://ops.example.com/edge", pipeline_url="r/p:v",
                   join_token="t")


def _read_if_there(path: Path) -> bytes:
    """A file's bytes, or none when the server removed it since it was listed (PostgreSQL drops caches such as
    pg_internal.init at any moment)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
