"""The Ops API's OpenAPI document stays true: it names every API route of the app, GET /openapi.json serves it,
and schemathesis' requests for each operation, sent with the admin token (the edges' routes with a real edge
credential), get from a real joey-ops no 5xx and only statuses, media types and bodies the document allows."""
from __future__ import annotations

import uuid

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route
from support.ops import start_ops

from joey.bundle import EdgeBundle
from opscenter.app import create_app
from opscenter.openapi import EDGE, document

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Loaded at collection, so that each operation is a test of its own (schemathesis' lazy fixture loader breaks on
# pytest 9); the server it runs against is a fixture.
schema = schemathesis.openapi.from_dict(document())


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fuzzed(request, registry, tmp_path_factory):
    """(a joey-ops process publishing to `registry`, an enrolled edge's credential). Without an edge registry, a
    publish by ids is refused with a 500 naming --edge-registry by design (docs/ops.md): fuzzed here, it works."""
    workdir = tmp_path_factory.mktemp("ops-openapi")
    if request.param == "sqlite":
        database_url = f"sqlite:///{workdir}/ops.db"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        name = f"t_{uuid.uuid4().hex}"
        cluster.admin(f"CREATE DATABASE {name}")
        database_url = cluster.url(name)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JOEY_OPS_EDGE_REGISTRY", f"{registry.host}/edge")
        env.setenv("JOEY_OPS_EDGE_REGISTRY_PLAIN_HTTP", "true")
        env.setenv("JOEY_OPS_BUILD_REGISTRY_PLAIN_HTTP", "true")
        server = start_ops(database_url, workdir)
    try:
        with server.client() as c:
            pub = c.publish({"pipeline_name": "fuzzed", "pipeline_version": "v1",
                             "pipeline_url": "127.0.0.1:5000/joey/pipelines/fuzzed:v1"})
            bundle = EdgeBundle.decode(c.add_edge(pub["id"], "fuzzed-edge")["docker_run_variables"]["EDGE_BUNDLE"])
        joined = httpx.post(f"{server.url}{EDGE}/join", json={"edge": "fuzzed-edge", "join_token": bundle.join_token})
        joined.raise_for_status()
        yield server, joined.json()["credential"]
    finally:
        server.stop()


def test_the_document_names_every_api_route(tmp_path):
    app = create_app(f"sqlite:///{tmp_path}/ops.db", "token", "http://127.0.0.1:1")
    routed = {(m, r.path) for r in app.routes if isinstance(r, Route) and not r.path.startswith("/ui")
              for m in r.methods - {"HEAD"}}
    documented = {(m.upper(), p) for p, ops in document()["paths"].items() for m in ops}
    assert documented == routed


def test_ops_serves_its_document(fuzzed):
    server, _ = fuzzed
    r = httpx.get(f"{server.url}/openapi.json")
    assert r.status_code == 200 and r.json() == document()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_ops_answers_as_its_document_says(case, fuzzed):
    server, credential = fuzzed
    token = credential if case.path.startswith(f"{EDGE}/") and case.path != f"{EDGE}/join" else server.token
    case.call_and_validate(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
