"""Three `joey-ops` processes on one real PostgreSQL answer as one (issue 19): a join token has one winner across
them, the same log pages sent to different replicas are stored once, and a publish copy whose replica is
killed (SIGKILL) mid-copy is finished by another once the claim's lease runs out."""
from __future__ import annotations

import io
import json
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from support.ops import EDGE_USER, start_publishing_ops
from support.procs import wait_for
from support.proxy import Forward, Hang, Proxy
from support.registry import start_registry
from test_ops_logs import record
from test_ops_publish_service import ids_of, seed_publish, statuses_until_done

from joey import mediatypes
from joey.bundle import EdgeBundle
from joey.descriptor import Descriptor, manifest_bytes
from joey.names import parse
from joey.registry import Registry

pytestmark = pytest.mark.postgres
REPLICAS = 3


@pytest.fixture()
def shared_db(pg_cluster) -> str:
    name = f"t_{uuid.uuid4().hex}"
    pg_cluster.admin(f"CREATE DATABASE {name}")
    return pg_cluster.url(name)


@pytest.fixture()
def replicas(shared_db, tmp_path, edge_registry):
    """Three publishing replicas over one database and one admin token, each with its own log."""
    token, servers = secrets.token_urlsafe(24), []
    try:
        for i in range(REPLICAS):
            workdir = tmp_path / f"replica-{i}"
            workdir.mkdir()
            servers.append(start_publishing_ops(token, shared_db, workdir, edge_registry))
        yield servers
    finally:
        for server in servers:
            server.stop()


def bundle_of(ops, make_record, name: str) -> EdgeBundle:
    with ops.client() as c:
        pub = c.publish(make_record("ccfraud"))
        return EdgeBundle.decode(c.add_edge(pub["id"], name)["docker_run_variables"]["EDGE_BUNDLE"])


def test_one_token_has_one_winner_across_replicas(replicas, make_record):
    bundle = bundle_of(replicas[0], make_record, "edge-join")

    def join(i: int) -> int:
        return httpx.post(f"{replicas[i % REPLICAS].url}/edge/join", timeout=60,
                          json={"edge": "edge-join", "join_token": bundle.join_token}).status_code

    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(join, range(50)))
    assert sorted(codes) == [200] + [401] * 49


def test_the_same_pages_sent_to_every_replica_are_stored_once(replicas, make_record):
    bundle = bundle_of(replicas[0], make_record, "edge-pages")
    cred = httpx.post(f"{replicas[1].url}/edge/join",
                      json={"edge": "edge-pages", "join_token": bundle.join_token}).json()["credential"]
    pages = [{"edge": "edge-pages", "seq_start": s, "seq_end": s + 49, "records": [record(i) for i in range(s, s + 50)]}
             for s in range(0, 500, 50)]

    def send(job: tuple[int, dict]) -> dict:
        replica, page = job
        r = httpx.post(f"{replicas[replica].url}/edge/logs", json=page, timeout=60,
                       headers={"Authorization": f"Bearer {cred}"})
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(REPLICAS * 4) as pool:
        answers = list(pool.map(send, [(r, p) for p in pages for r in range(REPLICAS)]))
    assert sum(a["stored"] for a in answers) == 500
    assert sum(a["duplicates"] for a in answers) == 500 * (REPLICAS - 1)
    with replicas[2].client() as c:
        got = c.get_logs("ccfraud", partition="edge-pages", limit=1000)["records"]
    assert sorted(r["time"] - 1713880452318 for r in got) == list(range(500))


def test_a_replica_killed_mid_copy_leaves_the_publish_to_another(replicas, edge_registry, make_record, tmp_path):
    build = start_registry(tmp_path / "build-registry")
    held = []

    def decide(req):
        # The first blob read of the copy hangs: whichever replica claimed the publish is stuck there.
        if req.method == "GET" and "/blobs/" in req.path and not held:
            held.append(req)
            return Hang(30)
        return Forward()

    try:
        with Proxy(build.host, decide) as proxy:
            pipeline, version = "ccfraud-replicas", "1"
            repo = f"joey/pipelines/{pipeline}"
            target = Registry(build.host, plain_http=True)
            config, layer = json.dumps({"name": pipeline}).encode(), secrets.token_bytes(2**20)
            cdesc = Descriptor.for_bytes("application/vnd.oci.image.config.v1+json", config)
            ldesc = Descriptor.for_bytes("application/vnd.oci.image.layer.v1.tar", layer)
            for desc, data in ((cdesc, config), (ldesc, layer)):
                target.write_blob(repo, desc, io.BytesIO(data))
            digest = target.write_manifest(repo, version, manifest_bytes(cdesc, [ldesc], {}), mediatypes.OCI_MANIFEST)
            built = replicas[0].call("publish", make_record(pipeline, version, registry=proxy.host,
                                                            pipeline_digest=digest, helm=None, engine_url=None))
            assert built.status_code == 200, built.text
            publish_id = seed_publish(replicas[1], ids_of(replicas[1], built.json()))["id"]
            wait_for("a replica stuck in the copy", lambda: held, timeout=60)
            claimer = wait_for("the claim", lambda: _claimed_by(replicas[0], publish_id), timeout=30)
            victim = next(r for r in replicas if r.proc is not None and f":{r.proc.pid}:" in claimer)
            victim.proc.kill()
            victim.proc.wait()
            victim.proc = None
            others = [r for r in replicas if r is not victim]
            seen, done = statuses_until_done(others[0], publish_id)
            assert done["status"] == "Published", done["error"]
            copied = parse(done["pipeline_url"])
            assert copied.host == edge_registry.host
            assert Registry(copied.host, plain_http=True, username=EDGE_USER, password=edge_registry.password
                            ).resolve(copied.repository, copied.reference)[2] == digest
            assert _claimed_by(others[1], publish_id) is None
    finally:
        build.stop()


def _claimed_by(ops, publish_id: int) -> str | None:
    """The worker holding the publish's claim, read from the shared database."""
    import psycopg

    with psycopg.connect(ops.database_url) as conn:
        row = conn.execute("SELECT claimed_by, done_at FROM publish_jobs WHERE publish_id = %s",
                           (publish_id,)).fetchone()
    return row[0] if row and row[1] is None else None
