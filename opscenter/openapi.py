"""The Ops API's OpenAPI 3.1 document, served at GET /openapi.json: the admin API, the edges' API and /metrics.

Request bodies are generated from the pydantic models of joey/opswire.py (`model_json_schema`), so the document
and the parsing cannot drift apart; the answers, written by the service as plain dicts, are described here by
hand. tests/opscenter/test_openapi_ops.py keeps it true by running schemathesis against a real joey-ops. The
dashboard (/ui, HTML behind a session cookie) is not an API and is left out. docs/ops.md is the prose.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from joey import __version__
from joey import opswire as models
from opscenter.assays import API as ASSAYS
from opscenter.service import EDGE_PATH as EDGE

API = "/v1/api/pipelines"   # opscenter/app.py's (which imports this module); the test holds them equal
_REF = "#/components/schemas/{model}"

_OBJECT = {"type": "object"}
_ARRAY = {"type": "array", "items": _OBJECT}


def _list(key: str) -> dict[str, Any]:
    return {"type": "object", "properties": {key: _ARRAY}, "required": [key]}


# (path, request model, summary, who calls it, the answer's schema); admin calls carry the admin token, edge
# calls the session credential from /edge/join, and "none" is /edge/join itself.
OPERATIONS: list[tuple[str, type[BaseModel], str, str, dict[str, Any]]] = [
    (f"{API}/publish", models.PublishBody, "Record the packager's publish, or publish a registered version",
     "admin", _OBJECT),
    (f"{API}/get_publish_status", models.PublishId, "One publish and its status", "admin", _OBJECT),
    (f"{API}/list_publishes_for_pipeline", models.PipelineRef, "A pipeline's publishes and edges", "admin",
     _list("publishes")),
    (f"{API}/list_pipelines", models.ListPipelines, "Pipelines, their versions and model configs", "admin",
     _list("pipelines")),
    (f"{API}/add_edge_to_publish", models.AddEdge, "Add an edge; the answer holds its EDGE_BUNDLE", "admin",
     _OBJECT),
    (f"{API}/remove_edge", models.EdgeName, "Remove an edge and its credential", "admin", {"type": "null"}),
    (f"{API}/remove_edge_from_publish", models.EdgeName, "remove_edge, by its seeds' name", "admin",
     {"type": "null"}),
    (f"{API}/list_edges", models.ListEdges, "Edges, what they serve and their last update", "admin",
     _list("edges")),
    (f"{API}/get_logs", models.GetLogs, "Stored inference records after a cursor", "admin",
     {"type": "object", "properties": {"records": _ARRAY, "next": {"type": ["integer", "null"]}},
      "required": ["records", "next"]}),
    (f"{ASSAYS}/create", models.AssayCreate, "Create an assay (a drift check)", "admin", _OBJECT),
    (f"{ASSAYS}/list", models.ListAssays, "Assays", "admin", _list("assays")),
    (f"{ASSAYS}/get", models.AssayId, "One assay", "admin", _OBJECT),
    (f"{ASSAYS}/run", models.RunAssay, "Compute an assay's windows (again)", "admin", _OBJECT),
    (f"{ASSAYS}/get_results", models.AssayResults, "An assay's results per window", "admin", _OBJECT),
    (f"{EDGE}/join", models.Join, "Trade the join token for a session credential", "none", _OBJECT),
    (f"{EDGE}/logs", models.LogPage, "Upload a page of the edge's inference log", "edge", _OBJECT),
    (f"{EDGE}/checkin", models.CheckIn, "Say what the edge serves; learn what it should", "edge", _OBJECT),
    (f"{EDGE}/update_status", models.UpdateStatus, "Report an in-line update's outcome", "edge", _OBJECT),
]
# Errors that only some routes answer; a 500 otherwise is a bug.
_MORE_ERRORS = {f"{API}/publish": {"500": "a publish by ids on an Ops center without an edge registry (--edge-registry)"}}
_SECURITY: dict[str, list[dict[str, list[str]]]] = {"admin": [{"adminToken": []}], "edge": [{"edgeCredential": []}], "none": []}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF.format(
        model="Error")}}}}


def _ok(schema: dict[str, Any], description: str = "the answer") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _post(path: str, model: type[BaseModel], summary: str, who: str, answer: dict[str, Any],
          schemas: dict[str, Any]) -> dict[str, Any]:
    """A POST operation taking `model`; its errors are the codes opscenter/app.py's `_error` answers."""
    schema = model.model_json_schema(ref_template=_REF)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    errors = {"400": "a body that is not the model's, naming each field",
              "401": "no or a wrong token", "403": "a credential that may not do this",
              "404": "no such publish, pipeline, edge or assay", "409": "a conflict with what is stored",
              "413": "a body over the route's limit", "503": "Ops cannot do it now", **_MORE_ERRORS.get(path, {})}
    return {"post": {"summary": summary, "security": _SECURITY[who],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "$ref": _REF.format(model=model.__name__)}}}},
                     "responses": {"200": _ok(answer), **{code: _error(d) for code, d in errors.items()}}}}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the Ops API."""
    schemas: dict[str, Any] = {"Error": {
        "type": "object", "required": ["status", "error", "message"],
        "properties": {"status": {"type": "integer"}, "error": {"type": "string"}, "message": {"type": "string"},
                       "hint": {"type": ["string", "null"]}}}}
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "The process lives", "security": [], "responses": {"200": _ok({
            "type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]})}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (token: JOEY_OPS_METRICS_TOKEN, if set)",
                             "security": [{"metricsToken": []}, {}], "responses": {
                                 "200": {"description": "Prometheus text", "content": {
                                     "text/plain": {"schema": {"type": "string"}},
                                     "application/openmetrics-text": {"schema": {"type": "string"}}}},
                                 "401": {"description": "no or a wrong metrics token"}}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [],
                                  "responses": {"200": _ok(_OBJECT, "OpenAPI 3.1")}}},
    }
    for path, model, summary, who, answer in OPERATIONS:
        paths[path] = _post(path, model, summary, who, answer, schemas)
    bearer = {"type": "http", "scheme": "bearer"}
    return {"openapi": "3.1.0",
            "info": {"title": "Joey Ops center", "version": __version__,
                     "description": "Publishes, edges, enrollment, inference logs and assays. See docs/ops.md."},
            "security": _SECURITY["admin"],
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {
                "adminToken": {**bearer, "description": "JOEY_OPS_TOKEN"},
                "edgeCredential": {**bearer, "description": "the session credential from /edge/join"},
                "metricsToken": {**bearer, "description": "JOEY_OPS_METRICS_TOKEN"}}}}


def route() -> Route:
    """GET /openapi.json, for opscenter/app.py."""
    content = document()

    async def serve(request: Request) -> JSONResponse:
        return JSONResponse(content)
    return Route("/openapi.json", serve, methods=["GET"])
