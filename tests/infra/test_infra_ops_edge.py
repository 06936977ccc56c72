"""The OpsEdge dynamic provider against a real `joey-ops` process.

The provider is pickled and unpickled exactly as Pulumi ships it to its dynamic provider host, then its
create/diff/update/delete run against Ops on loopback.
"""
from __future__ import annotations

import base64
import secrets
import sys
import uuid
from pathlib import Path

import dill
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from support.procs import free_port, start, stop, wait_http

from infra.ops_edge import OpsEdgeProvider
from joey.bundle import EdgeBundle
from joey.errors import Conflict, Missing, OpsUnreachable, Unauthorized
from joey.opsclient import OpsClient

JOEY_OPS = str(Path(sys.executable).with_name("joey-ops"))


@pytest.fixture()
def ops(tmp_path):
    """(url, token, publish id) of a joey-ops process with one publish registered."""
    port, token = free_port(), secrets.token_urlsafe(24)
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "joey-ops.log"
    proc = start([JOEY_OPS, "--host", "127.0.0.1", "--port", str(port), "--database",
                  f"sqlite:///{tmp_path}/ops.db", "--log-level", "warning"], log, env={"JOEY_OPS_TOKEN": token})
    try:
        wait_http(f"{url}/healthz", proc=proc, log=log)
        version = str(uuid.uuid4())
        limits = {"cpu": 2.0, "memory": "2Gi"}
        with OpsClient(url, token) as client:
            publish = client.publish({
                "pipeline_name": "ccfraud", "pipeline_version": version,
                "pipeline_url": f"127.0.0.1:5000/joey/pipelines/ccfraud:{version}",
                "engine_config": {"engine": {"resources": {"limits": limits, "requests": dict(limits)}}},
            })
        yield url, token, publish["id"]
    finally:
        stop(proc)


def shipped_provider() -> OpsEdgeProvider:
    """The provider as the dynamic provider host gets it: dill-pickled, base64, unpickled."""
    return dill.loads(base64.b64decode(serialize_provider(OpsEdgeProvider())))


def props(url: str, token: str, publish_id: int, **overrides) -> dict:
    return {"ops_url": url, "token": token, "publish_id": publish_id, "edge_name": "store-042",
            "tags": ["store", "eu-west"], "edge_bundle": None, "pipeline_url": None, **overrides}


def edges(url: str, token: str) -> list[dict]:
    with OpsClient(url, token) as client:
        return client.list_edges()


def test_create_enrolls_and_delete_removes(ops):
    url, token, publish_id = ops
    provider = shipped_provider()
    created = provider.create(props(url, token, publish_id))
    assert created.id == "store-042"
    bundle = EdgeBundle.decode(created.outs["edge_bundle"])
    assert bundle.edge_name == "store-042"
    assert bundle.pipeline_url == created.outs["pipeline_url"]
    assert bundle.pipeline_url.startswith("127.0.0.1:5000/joey/pipelines/ccfraud:")
    assert created.outs["token"] == token and created.outs["publish_id"] == publish_id
    [edge] = edges(url, token)
    assert (edge["name"], edge["tags"], edge["publish_id"]) == ("store-042", ["store", "eu-west"], publish_id)

    provider.delete(created.id, created.outs)
    assert edges(url, token) == []
    provider.delete(created.id, created.outs)  # already gone: still the goal state, no error


def test_replacing_an_edge_issues_a_new_bundle(ops):
    url, token, publish_id = ops
    provider = shipped_provider()
    first = provider.create(props(url, token, publish_id))
    news = props(url, token, publish_id, tags=["store"])
    diff = provider.diff(first.id, first.outs, news)
    assert diff.changes and diff.replaces == ["tags"] and diff.delete_before_replace
    # What the engine does for a delete-before-replace: delete, then create anew under the same name.
    provider.delete(first.id, first.outs)
    second = provider.create(news)
    assert EdgeBundle.decode(second.outs["edge_bundle"]).join_token != \
        EdgeBundle.decode(first.outs["edge_bundle"]).join_token
    assert [e["tags"] for e in edges(url, token)] == [["store"]]


def test_a_new_token_updates_without_replacing(ops):
    url, token, publish_id = ops
    provider = shipped_provider()
    created = provider.create(props(url, token, publish_id))
    unchanged = provider.diff(created.id, created.outs, props(url, token, publish_id))
    assert not unchanged.changes and unchanged.replaces == []
    rotated = props(url, "a-rotated-admin-token", publish_id)
    diff = provider.diff(created.id, created.outs, rotated)
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, created.outs, rotated)
    assert updated.outs["token"] == "a-rotated-admin-token"
    assert updated.outs["edge_bundle"] == created.outs["edge_bundle"]


def test_ops_refusals_reach_pulumi_clearly(ops):
    url, token, publish_id = ops
    provider = shipped_provider()
    with pytest.raises(Unauthorized) as err:
        provider.create(props(url, "not-the-admin-token", publish_id))
    assert "not-the-admin-token" not in err.value.one_line() and "JOEY_OPS_TOKEN" in err.value.one_line()
    with pytest.raises(Missing, match=f"no publish with id {publish_id + 1}"):
        provider.create(props(url, token, publish_id + 1))
    provider.create(props(url, token, publish_id))
    with pytest.raises(Conflict, match="an edge named 'store-042' already exists"):
        provider.create(props(url, token, publish_id))
    with pytest.raises(OpsUnreachable):
        provider.create(props(f"http://127.0.0.1:{free_port()}", token, publish_id))
