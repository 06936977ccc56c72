"""The admin REST API of a real joey-ops process, on SQLite and on PostgreSQL, in the seeds' shapes (003/004)."""
from __future__ import annotations

import uuid

import httpx
import pytest
from support.procs import free_port

from joey.bundle import REPLACE_PLACEHOLDER, EdgeBundle
from joey.errors import BadRequest, Conflict, Missing, OpsUnreachable, Unauthorized
from joey.opsclient import OpsClient

SEED_PUBLISH_KEYS = {"id", "pipeline_version_name", "status", "created_at", "updated_at", "created_by",
                     "pipeline_url", "engine_url", "helm", "engine_config", "error", "user_images",
                     "docker_run_variables"}


def test_publish_status_and_list_have_the_seeds_shape(ops, make_record):
    rec = make_record("ccfraud")
    with ops.client() as c:
        pub = c.publish(rec)
        assert SEED_PUBLISH_KEYS <= pub.keys()
        assert isinstance(pub["id"], int) and pub["status"] == "Published"
        assert pub["created_at"].endswith("+00:00") and pub["created_at"] == pub["updated_at"]
        assert pub["pipeline_version_name"] == rec["pipeline_version"]
        assert pub["helm"]["chart"] == rec["helm"]["chart"] and pub["docker_run_variables"] == {}
        assert pub["pipeline_digest"] == rec["pipeline_digest"]  # packager fields come back as sent
        assert c.get_publish_status(pub["id"]) == pub
        second = c.publish(make_record("ccfraud"))
        c.publish(make_record("other-pipeline"))
        listed = c.list_publishes("ccfraud")
        assert set(listed) == {"publishes", "edges"}
        assert [p["id"] for p in listed["publishes"]] == [pub["id"], second["id"]]
        assert listed["edges"] == []


def test_unknown_fields_of_the_record_are_kept(ops, make_record):
    with ops.client() as c:
        pub = c.publish(make_record("ccfraud", commands={"docker": "docker run ..."}))
        assert c.get_publish_status(pub["id"])["commands"] == {"docker": "docker run ..."}


def test_add_edge_returns_the_publish_with_a_bundle_for_that_edge(ops, make_record):
    rec = make_record("ccfraud", cpus=1.25)
    with ops.client() as c:
        pub = c.publish(rec)
        added = c.add_edge(pub["id"], "edge-ccfraud-01", ["site-a", "rack 3"])
        assert added["id"] == pub["id"] and added["status"] == "Published"
        bundle_text = added["docker_run_variables"]["EDGE_BUNDLE"]
        assert added["helm"]["values"]["edgeBundle"] == bundle_text
        assert added["helm"]["chart"] == rec["helm"]["chart"]
        b = EdgeBundle.decode(bundle_text)
        assert b.edge_name == "edge-ccfraud-01"
        assert b.opscenter_host == f"{ops.url}/edge"
        assert b.pipeline_url == rec["pipeline_url"]
        assert b.config_cpus == "1.25" and b.oci_registry == "127.0.0.1:5000"
        assert b.workspace_id == str(pub["workspace_id"])
        assert len(b.join_token) >= 43  # 256 random bits
        # the token is handed out once: the stored publish does not carry it
        assert "EDGE_BUNDLE" not in c.get_publish_status(pub["id"])["docker_run_variables"]


def test_list_edges(ops, make_record):
    with ops.client() as c:
        pub = c.publish(make_record("ccfraud", memory="900Mi", cpus=1.0))
        other = c.publish(make_record("houseprice"))
        c.add_edge(pub["id"], "edge-b", ["x"])
        c.add_edge(pub["id"], "edge-a")
        c.add_edge(other["id"], "edge-c")
        edges = c.list_edges("ccfraud")
        assert [e["name"] for e in edges] == ["edge-a", "edge-b"]
        e = edges[1]
        uuid.UUID(e["id"])
        assert e["tags"] == ["x"] and e["publish_id"] == pub["id"]
        assert e["pipeline_version"] == pub["pipeline_version"]
        assert e["spiffe_id"] == "spiffe://127.0.0.1/edge/edge-b"
        assert (e["cpus"], e["memory"]) == (1.0, "900Mi")
        assert e["created_at"].endswith("+00:00") and e["last_seen"] is None and e["enrolled"] is False
        assert [x["name"] for x in c.list_edges()] == ["edge-a", "edge-b", "edge-c"]
        assert [x["name"] for x in c.list_publishes("ccfraud")["edges"]] == ["edge-a", "edge-b"]


def test_edge_names_are_unique_across_publishes(ops, make_record):
    with ops.client() as c:
        one, two = c.publish(make_record("ccfraud")), c.publish(make_record("houseprice"))
        c.add_edge(one["id"], "edge-1")
        with pytest.raises(Conflict, match="edge-1") as err:
            c.add_edge(two["id"], "edge-1")
        assert err.value.http_status == 409 and "remove_edge" in err.value.hint
    r = httpx.post(f"{ops.url}/v1/api/pipelines/add_edge_to_publish",
                   headers={"Authorization": f"Bearer {ops.token}"},
                   json={"pipeline_publish_id": one["id"], "name": "edge-1", "tags": []})
    assert r.status_code == 409 and r.json()["error"] == "Conflict"


@pytest.mark.parametrize("path", ["remove_edge", "remove_edge_from_publish"])
def test_remove_edge_frees_the_name(ops, make_record, path):
    with ops.client() as c:
        pub = c.publish(make_record("ccfraud"))
        first = EdgeBundle.decode(c.add_edge(pub["id"], "edge-1")["docker_run_variables"]["EDGE_BUNDLE"])
        r = httpx.post(f"{ops.url}/v1/api/pipelines/{path}", headers={"Authorization": f"Bearer {ops.token}"},
                       json={"name": "edge-1"})
        assert r.status_code == 200 and r.json() is None  # seed 003: returns null
        assert c.list_edges() == []
        again = EdgeBundle.decode(c.add_edge(pub["id"], "edge-1")["docker_run_variables"]["EDGE_BUNDLE"])
        assert again.join_token != first.join_token
        with pytest.raises(Missing, match="no edge named 'nope'"):
            c.remove_edge("nope")


def test_replacing_a_publish_moves_its_edges(ops, make_record):
    with ops.client() as c:
        old = c.publish(make_record("ccfraud"))
        c.add_edge(old["id"], "edge-1")
        by_url = c.publish(make_record("ccfraud", replaces=[old["pipeline_url"]]))
        assert by_url["replaces"] == [old["id"]]
        assert [e["publish_id"] for e in c.list_edges()] == [by_url["id"]]
        # to an entirely different pipeline, naming the replaced one as PIPELINE:VERSION
        new = c.publish(make_record("ccfraud-v2", replaces=[f"ccfraud:{by_url['pipeline_version']}"]))
        assert [e["pipeline_name"] for e in c.list_edges()] == ["ccfraud-v2"]
        assert c.list_publishes("ccfraud")["edges"] == []
        assert c.publish(make_record("x", replaces=[new["id"]]))["replaces"] == [new["id"]]
        with pytest.raises(Missing, match="replaces: no publish"):
            c.publish(make_record("x", replaces=["nothing:here"]))
        with pytest.raises(Missing, match="no publish with id 9999"):
            c.publish(make_record("x", replaces=[9999]))


def test_moved_enrolled_edges_get_a_bundle_without_a_token(ops, make_record):
    with ops.client() as c:
        old = c.publish(make_record("ccfraud"))
        b = EdgeBundle.decode(c.add_edge(old["id"], "edge-1")["docker_run_variables"]["EDGE_BUNDLE"])
        assert c.add_edge(old["id"], "edge-2")
        httpx.post(f"{ops.url}/edge/join", json={"edge": "edge-1", "join_token": b.join_token}).raise_for_status()
        new = c.publish(make_record("ccfraud", replaces=[old["id"]]))
        assert set(new["edge_bundles"]) == {"edge-1"}  # edge-2 never enrolled: it needs its own token
        moved = EdgeBundle.decode(new["edge_bundles"]["edge-1"])
        assert moved.join_token == REPLACE_PLACEHOLDER and moved.pipeline_url == new["pipeline_url"]


BAD_REQUESTS = [
    ("publish", {"pipeline_name": "Bad_Name", "pipeline_version": "1", "pipeline_url": "r/p:1"}, "pipeline_name"),
    ("publish", {"pipeline_name": "ok"}, "pipeline_version: Field required"),
    ("publish", {"pipeline_name": "ok", "pipeline_version": "1", "pipeline_url": "r/p:1 $(x)"}, "PIPELINE_URL"),
    ("get_publish_status", {"id": "7"}, "id: Input should be a valid integer"),
    ("get_publish_status", {}, "exactly one of `id` or `publish_id`"),
    ("add_edge_to_publish", {"pipeline_publish_id": 1, "name": "Edge_1"}, "edge name must be a DNS-1123 label"),
    ("add_edge_to_publish", {"pipeline_publish_id": 1, "name": "e", "tags": [""]}, "tags"),
    ("add_edge_to_publish", {"pipeline_publish_id": 1, "name": "e", "bogus": 1}, "bogus: Extra inputs"),
    ("list_edges", [], "must be a JSON object"),
]


@pytest.mark.parametrize("endpoint,body,message", BAD_REQUESTS)
def test_bad_input_is_a_400_naming_the_field(ops, endpoint, body, message):
    r = httpx.post(f"{ops.url}/v1/api/pipelines/{endpoint}", headers={"Authorization": f"Bearer {ops.token}"},
                   json=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]


def test_bad_json_and_errors_through_the_client(ops):
    r = httpx.post(f"{ops.url}/v1/api/pipelines/list_edges", headers={"Authorization": f"Bearer {ops.token}"},
                   content=b"{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["message"]
    with ops.client() as c:
        with pytest.raises(Missing, match="no publish with id 424242"):
            c.get_publish_status(424242)
        with pytest.raises(Missing):
            c.add_edge(424242, "edge-1")
        with pytest.raises(BadRequest, match="DNS-1123"):
            c.add_edge(1, "-bad-")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_admin_token_is_required(ops):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ops.token}"}):
        r = httpx.post(f"{ops.url}/v1/api/pipelines/list_edges", headers=headers, json={})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    with ops.client(token="not-the-token") as c, pytest.raises(Unauthorized) as err:
        c.list_edges()
    assert "JOEY_OPS_TOKEN" in err.value.one_line()
    assert httpx.get(f"{ops.url}/healthz").json() == {"status": "ok"}


def test_unreachable_ops_names_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    with OpsClient(url, "t" * 20) as c, pytest.raises(OpsUnreachable) as err:
        c.list_edges()
    assert f"is joey-ops running at {url}?" in err.value.one_line()


def test_client_settings_come_from_the_environment(monkeypatch):
    from joey.errors import ConfigError

    with pytest.raises(ConfigError, match="JOEY_OPS_URL"):
        OpsClient()
    monkeypatch.setenv("JOEY_OPS_URL", "http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="JOEY_OPS_TOKEN"):
        OpsClient()
    monkeypatch.setenv("JOEY_OPS_TOKEN", "x" * 20)
    with OpsClient() as c:
        assert c.url == "http://127.0.0.1:1"
