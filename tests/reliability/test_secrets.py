"""Scenario 15 — secrets stay secret. One real flow: `packager publish --json` to a registry that needs a
password, recording in Ops; `packager edge add`; an engine (DEBUG on) that pulls with that password, enrolls
with the bundle's join token and uploads with its session credential; joey-ops at debug level. Pass: no
EDGE_BUNDLE, join token, session credential, registry password or Ops admin token — raw or base64 — in the
engine's log, Ops' log, Ops' database, the engine's /status, or any `--json` output except `edge add`'s, whose
whole point is to hand out the bundle (docs/reliability.md); and a chart rendered with a registry password
and a bundle (packager.chart.render) carries them only in its Secrets. Pulumi's inputs and outputs are checked
in tests/infra."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.engine import ARROW_FILE, start_engine
from support.procs import wait_for
from support.reliability import numbered_body, ops_ids, start_ops, upload_status

from engine.edge_client import CREDENTIAL_FILE
from joey.bundle import EdgeBundle
from packager import chart

PACKAGER = str(Path(sys.executable).with_name("packager"))


def forms(secret: str) -> set[str]:
    """How a secret could show up: as is, and base64 (the way Kubernetes Secrets and Basic auth carry it)."""
    raw = secret.encode()
    return {secret, base64.b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip("=")}


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return sorted(name for name, value in secrets.items() for form in forms(value) if form in text)


def packager(args: list[str], env: dict, cwd: Path) -> str:
    done = subprocess.run([PACKAGER, *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def flow(auth_registry, pipeline_dir, tmp_path_factory):
    """Run the whole flow once; hand every text it produced to the tests."""
    work = tmp_path_factory.mktemp("secrets")
    ops = start_ops(work / "ops", log_level="debug")
    env = {"OCI_USERNAME": auth_registry.username, "OCI_PASSWORD": auth_registry.password,
           "JOEY_OPS_URL": ops.url, "JOEY_OPS_TOKEN": ops.token, "JOEY_STORE": str(work / "store"),
           "DOCKER_CONFIG": str(work / "docker-config")}
    texts: dict[str, str] = {}
    try:
        texts["publish --json"] = packager(["publish", str(pipeline_dir / "pipeline.yaml"), "--registry",
                                            f"{auth_registry.host}/joey", "--plain-http", "--json"], env, work)
        record = json.loads(texts["publish --json"][:texts["publish --json"].rindex("}") + 1])
        added = packager(["edge", "add", str(record["id"]), "shop-7", "--json"], env, work)
        bundle = json.loads(added)["docker_run_variables"]["EDGE_BUNDLE"]
        texts["edge list --json"] = packager(["edge", "list", "--json"], env, work)
        texts["publishes --json"] = packager(["publishes", "edge-pipeline", "--registry",
                                              f"{auth_registry.host}/joey", "--plain-http", "--json"], env, work)
        texts["inspect --json"] = packager(["inspect", record["pipeline_url"], "--plain-http", "--json"], env, work)

        persist = work / "persist"
        engine = start_engine(record["pipeline_url"], persist, EDGE_BUNDLE=bundle, DEBUG="true",
                              OCI_USERNAME=auth_registry.username, OCI_PASSWORD=auth_registry.password)
        try:
            assert engine.post("/infer", numbered_body(77), ARROW_FILE).status_code == 200
            wait_for("the record in Ops", lambda: 77 in ops_ids(ops, "edge-pipeline", "shop-7"))
            texts["engine /status"] = json.dumps(engine.get("/status").json())
            assert upload_status(engine)["enrolled"]
        finally:
            engine.stop()
        texts["engine log"] = engine.log_text()
        texts["logs export --json"] = packager(["logs", "export", "--pipeline", "edge-pipeline", "--dir",
                                                str(work / "export"), "--json"], env, work)
        credential = json.loads((persist / CREDENTIAL_FILE).read_text())["credential"]
    finally:
        ops.stop()
    texts["ops log"] = ops.log.read_text()
    texts["ops database"] = ops.database.read_bytes().decode("latin-1")
    secrets = {"EDGE_BUNDLE": bundle, "join token": EdgeBundle.decode(bundle).join_token,
               "session credential": credential, "registry password": auth_registry.password,
               "registry basic auth": f"{auth_registry.username}:{auth_registry.password}",
               "Ops admin token": ops.token}
    return texts, secrets, added


CHECKED = ["publish --json", "edge list --json", "publishes --json", "inspect --json", "logs export --json",
           "engine log", "engine /status", "ops log", "ops database"]


@pytest.mark.parametrize("where", CHECKED)
def test_no_secret_where_it_does_not_belong(flow, where):
    texts, secrets, _ = flow
    assert texts[where].strip(), f"{where}: nothing was captured"
    assert leaks(texts[where], secrets) == []


def test_edge_add_prints_the_bundle_and_nothing_else_secret(flow):
    """The one intended exception: `edge add` exists to hand the bundle (with its join token) to whoever
    installs the edge. It shows no other secret."""
    _, secrets, added = flow
    assert secrets["EDGE_BUNDLE"] in added
    others = {k: v for k, v in secrets.items() if k not in ("EDGE_BUNDLE", "join token")}
    assert leaks(added, others) == []


def test_the_rendered_chart_keeps_secrets_in_secrets():
    bundle = EdgeBundle(edge_name="shop-7", opscenter_host="ops.example.com/edge",
                        pipeline_url="registry.example.com/joey/pipelines/edge-pipeline:v1",
                        join_token="J0inT0kenValue_-xyz").encode()
    password = "Registry-Passw0rd"
    values = {"image": {"repository": "registry.example.com/joey/engines/joey-engine", "tag": "0.1.0"},
              "pipelineUrl": "registry.example.com/joey/pipelines/edge-pipeline:v1",
              "ociRegistry": {"username": "robot", "password": password}, "edgeBundle": bundle,
              "localInferenceStorage": "512Mi", "plateauPageSize": 100, "debug": True}
    secrets = {"EDGE_BUNDLE": bundle, "join token": "J0inT0kenValue_-xyz", "registry password": password}
    objects = chart.render(chart.chart_source(), values, name="shop", namespace="edge")
    kinds = {o["kind"] for o in objects}
    assert "Secret" in kinds and "Deployment" in kinds
    for o in objects:
        found = leaks(json.dumps(o), secrets)
        if o["kind"] == "Secret":
            continue
        assert found == [], f"{o['kind']}/{o['metadata']['name']} carries {found}"
    assert leaks(chart.render_notes(chart.chart_source(), values, name="shop", namespace="edge"), secrets) == []
    assert any(leaks(json.dumps(o), secrets) for o in objects if o["kind"] == "Secret")
