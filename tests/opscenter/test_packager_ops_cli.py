"""The packager CLI with an Ops center: publish records an id, edges are added/listed/removed, --replaces
moves edges, and the printed bundle decodes to this edge and publish."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from joey.bundle import EdgeBundle

ONE = "name: edge-pipeline\nworkspace: demo\nsteps:\n  - name: ccfraud-logreg\n" \
      "    model: models/ccfraud-logreg.onnx\n    tensor_fields: [tensor]\n"


def cli(args, ops, check=True):
    env = {**os.environ, "JOEY_OPS_URL": ops.url, "JOEY_OPS_TOKEN": ops.token}
    out = subprocess.run([sys.executable, "-m", "packager.cli", *args], capture_output=True, text=True, env=env)
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture()
def published(ops, registry, example_models, write_spec):
    spec = write_spec(ONE)
    rec = json.loads(cli(["publish", str(spec), "--registry", f"{registry.host}/opscli", "--plain-http", "--json"],
                         ops).stdout)
    return spec, rec


def test_publish_records_an_id_and_edges_round_trip(published, ops, registry):
    spec, rec = published
    assert isinstance(rec["id"], int) and rec["status"] == "Published"
    status = ops.client().get_publish_status(rec["id"])
    assert status["pipeline_digest"] == rec["pipeline_digest"]

    added = json.loads(cli(["edge", "add", str(rec["id"]), "store-042", "--tag", "eu", "--json"], ops).stdout)
    bundle = EdgeBundle.decode(added["docker_run_variables"]["EDGE_BUNDLE"])
    assert bundle.edge_name == "store-042" and bundle.pipeline_url == rec["pipeline_url"]
    assert added["helm"]["values"]["edgeBundle"] == added["docker_run_variables"]["EDGE_BUNDLE"]
    assert "-v $PERSISTENT_VOLUME_DIR:/persist" in added["commands"]["docker_run"]
    assert f"-e EDGE_BUNDLE={added['docker_run_variables']['EDGE_BUNDLE']}" in added["commands"]["docker_run"]
    assert "--set edgeBundle=" in added["commands"]["helm_install"]

    dup = cli(["edge", "add", "edge-pipeline", "store-042"], ops, check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr

    edges = json.loads(cli(["edge", "list", "edge-pipeline", "--json"], ops).stdout)["edges"]
    assert [e["name"] for e in edges] == ["store-042"] and edges[0]["tags"] == ["eu"]

    # a replacing publish moves the edge to it
    spec2 = spec.with_name("v2.yaml")
    spec2.write_text(ONE.replace("ccfraud-logreg", "ccfraud-mlp"))
    rec2 = json.loads(cli(["publish", str(spec2), "--registry", f"{registry.host}/opscli", "--plain-http",
                           "--replaces", str(rec["id"]), "--json"], ops).stdout)
    assert rec2["replaces"][0]["id"] == rec["id"]
    assert rec2["commands"]["helm_install"].startswith("helm upgrade")
    edges = json.loads(cli(["edge", "list", "--json"], ops).stdout)["edges"]
    assert edges[0]["pipeline_version"] == rec2["pipeline_version"]

    cli(["edge", "remove", "store-042"], ops)
    assert json.loads(cli(["edge", "list", "--json"], ops).stdout)["edges"] == []


def test_bad_token_is_one_clear_line(published, ops):
    env = {**os.environ, "JOEY_OPS_URL": ops.url, "JOEY_OPS_TOKEN": "x" * 20}
    out = subprocess.run([sys.executable, "-m", "packager.cli", "edge", "list"], capture_output=True, text=True,
                         env=env)
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and "JOEY_OPS_TOKEN" in out.stderr
