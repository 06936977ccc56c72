"""The engine's OpenAPI 3.1 document, served at GET /openapi.json: the seeds' API, /metrics and OIP v2 (/v2).

Written as data, by hand: the engine has no pydantic models (its bodies are Arrow or pandas-records JSON, read
by engine.codecs). tests/engine/test_openapi_engine.py keeps it true by running schemathesis against a real
engine. docs/engine-api.md is the prose.
"""
from __future__ import annotations

from typing import Any

from engine.codecs.media import ARROW_FILE, ARROW_STREAM, JSON
from joey import __version__

RECORDS = "application/json; format=pandas-records"

_ref = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*codes: str) -> dict[str, Any]:
    """Error answers, each {"error": "..."} (docs/engine-api.md, Errors)."""
    return {code: _json(_ref, "an error, named in one line") for code in codes}


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or list(properties)}


_STR = {"type": "string"}
_INT = {"type": "integer"}
_BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}
# Request and answer records: pandas-records JSON in the seeds' shape.
_RECORDS = {"type": "array", "items": {"type": "object"}}
_TABLES = {ARROW_FILE: {"schema": _BINARY}, ARROW_STREAM: {"schema": _BINARY}}
_RECORDS_ANSWER = {"description": "one record per row (pandas-records JSON, or one Arrow table with Accept)",
                   "content": {JSON: {"schema": _RECORDS}, **_TABLES}}

_TENSOR = _obj({"name": _STR, "datatype": _STR, "shape": {"type": "array", "items": _INT}})
_MODEL_METADATA = _obj({"name": _STR, "versions": {"type": "array", "items": _STR}, "platform": _STR,
                        "inputs": {"type": "array", "items": _TENSOR},
                        "outputs": {"type": "array", "items": _TENSOR}})
_INFER_INPUT = {**_obj({"name": _STR, "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                        "datatype": {"enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                                              "INT32", "INT64", "FP16", "FP32", "FP64"]},
                        "parameters": {"type": "object"}, "data": {"type": "array"}},
                       ["name", "shape", "datatype"])}
_INFER_REQUEST = _obj({"id": _STR, "parameters": {"type": "object"},
                       "inputs": {"type": "array", "items": _INFER_INPUT, "minItems": 1},
                       "outputs": {"type": "array", "items": _obj({"name": _STR, "parameters": {"type": "object"}},
                                                                  ["name"])}}, ["inputs"])
_INFER_OUTPUT = _obj({"name": _STR, "datatype": _STR, "shape": {"type": "array", "items": _INT},
                      "parameters": {"type": "object"}, "data": {"type": "array"}}, ["name", "datatype", "shape"])
_INFER_ANSWER = _obj({"model_name": _STR, "model_version": _STR, "id": _STR,
                      "outputs": {"type": "array", "items": _INFER_OUTPUT}}, ["model_name", "outputs"])
_NAME = [{"name": "name", "in": "path", "required": True, "schema": _STR}]


def _get(summary: str, ok: dict[str, Any], *errors: str, **extra: Any) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": ok, **_errors(*errors)}, **extra}}


def _infer(summary: str, **extra: Any) -> dict[str, Any]:
    body = {"required": True, "content": {RECORDS: {"schema": _RECORDS}, JSON: {"schema": _RECORDS}, **_TABLES}}
    return {"post": {"summary": summary, "requestBody": body,
                     "responses": {"200": _RECORDS_ANSWER,
                                   **_errors("400", "404", "406", "413", "415", "503", "507")}, **extra}}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the engine's HTTP API."""
    ready = _obj({"status": {"const": "ready"}, "pipeline": _STR, "version": _STR, "digest": _STR})
    pipelines = _obj({"pipelines": {"type": "array", "items": _obj({"id": _STR, "version": _STR,
                                                                    "status": _STR})}})
    models = _obj({"models": {"type": "array", "items": _obj({"name": _STR, "sha": _STR, "status": _STR,
                                                              "version": _STR})}})
    status = _obj({"logs": {"type": "object"}, "upload": {"type": ["object", "null"]},
                   "serving": {"type": ["object", "null"]}, "update": {"type": ["object", "null"]}})
    logs_query = {"type": "object", "properties": {"limit": {"type": "integer", "minimum": 1},
                                                   "before": {"type": "integer", "minimum": 0}}}
    metrics = {"description": "Prometheus metrics", "content": {"text/plain": {"schema": _STR},
                                                                "application/openmetrics-text": {"schema": _STR}}}
    paths = {
        "/health": _get("The process lives", _json(_obj({"status": {"const": "ok"}}), "alive")),
        "/ready": _get("The pipeline is loaded and serves", _json(ready, "ready"), "503"),
        "/status": _get("Log store, uploader, what serves, in-line updates", _json(status, "state"), "503"),
        "/pipelines": _get("The served pipeline", _json(pipelines, "one pipeline"), "503"),
        "/models": _get("The pipeline's models, one per step", _json(models, "its models"), "503"),
        "/metrics": _get("Prometheus metrics", metrics),
        "/openapi.json": _get("This document", _json({"type": "object"}, "OpenAPI 3.1")),
        "/infer": _infer("Run the pipeline over the request's rows; recorded before the answer"),
        "/pipelines/{name}": _infer("/infer, for the pipeline named `name`", parameters=_NAME),
        "/logs": {"post": {"summary": "Stored inference records, oldest first",
                           "requestBody": {"content": {JSON: {"schema": logs_query}}},
                           "responses": {"200": {**_RECORDS_ANSWER, "headers": {"Joey-Logs-Before": {
                               "description": "the `before` that asks for older records", "schema": _STR}}},
                                         **_errors("400", "406", "413", "503")}}},
        "/v2": _get("OIP server metadata", _json(_obj({"name": _STR, "version": _STR,
                                                       "extensions": {"type": "array", "items": _STR}}),
                                                 "server metadata")),
        "/v2/health/live": _get("OIP liveness", _json(_obj({"live": {"type": "boolean"}}), "live")),
        "/v2/health/ready": _get("OIP readiness", _json(_obj({"ready": {"type": "boolean"}}), "ready"), "503"),
        "/v2/models/{name}": _get("OIP model metadata (the pipeline as one model)",
                                  _json(_MODEL_METADATA, "model metadata"), "404", "503", parameters=_NAME),
        "/v2/models/{name}/ready": _get("OIP model readiness", _json(_obj({"name": _STR, "ready": {
            "type": "boolean"}}), "ready"), "404", "503", parameters=_NAME),
        "/v2/models/{name}/infer": {"post": {
            "summary": "OIP inference: JSON tensors, or the binary tensor extension (Inference-Header-Content-Length)",
            "parameters": [*_NAME, {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
                                    "schema": {"type": "integer", "minimum": 0}}],
            "requestBody": {"required": True, "content": {JSON: {"schema": _INFER_REQUEST},
                                                          "application/octet-stream": {"schema": _BINARY}}},
            "responses": {"200": {"description": "the outputs; binary ones after a JSON header",
                                  "content": {JSON: {"schema": _INFER_ANSWER},
                                              "application/octet-stream": {"schema": _BINARY}}},
                          **_errors("400", "404", "413", "503", "507")}}},
    }
    return {"openapi": "3.1.0",
            "info": {"title": "Joey engine", "version": __version__,
                     "description": "The edge inference server: the seeds' API, Prometheus metrics and the Open "
                                    "Inference Protocol v2. See docs/engine-api.md."},
            "paths": paths,
            "components": {"schemas": {"Error": _obj({"error": _STR})}}}
