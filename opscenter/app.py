"""The Ops center's HTTP face (Starlette): the seeds' /v1/api/pipelines/* API for admins, /edge/* for edges.

Every endpoint is a JSON POST. Admin calls carry `Authorization: Bearer $JOEY_OPS_TOKEN`; edge calls carry
the session credential from /edge/join (only /edge/join itself goes without). Errors are answered in one
place, `_error`, as {"status", "error", "message", "hint"}.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import time
from typing import Any, Awaitable, Callable

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from joey.errors import JoeyError

from joey import opswire as models
from opscenter.db import Database
from joey.errors import BadRequest, PayloadTooLarge, Unauthorized
from opscenter.schema import STATEMENTS
from opscenter.service import EDGE_PATH, OpsService

log = logging.getLogger("joey.ops")
API = "/v1/api/pipelines"
# A page of PLATEAU_PAGE_SIZE records of wide tensors fits well inside this; admin bodies are far smaller.
DEFAULT_MAX_BODY = 64 * 2**20


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def _json_body(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    try:
        # NaN/Infinity (Python's json writes them) become null, as pandas' to_json writes them: answers stay JSON.
        return json.loads(b"".join(chunks) or b"{}", parse_constant=lambda _: None)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"request body is not JSON: {e}") from None


def _error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, JoeyError):
        status, kind, message, hint = exc.http_status, type(exc).__name__, str(exc), exc.hint
    elif isinstance(exc, HTTPException):
        status, kind, message, hint = exc.status_code, "HTTPError", exc.detail, None
    else:  # uvicorn logs the traceback
        status, kind, message, hint = 500, "InternalError", "internal error", "see the joey-ops log"
    if status >= 500:
        log.error("%s %s -> %s %s", request.method, request.url.path, status, message)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"status": status, "error": kind, "message": message, "hint": hint}, status,
                        headers=headers)


def create_app(database_url: str, admin_token: str, public_url: str, *,
               clock: Callable[[], float] = time.time, max_body: int = DEFAULT_MAX_BODY) -> Starlette:
    """The app, its schema created. `app.state.clock` is read on every call, so tests can move time."""
    db = Database(database_url)
    db.create_schema(STATEMENTS)
    admin_digest = hashlib.sha256(admin_token.encode()).digest()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        db.close()

    app = Starlette(lifespan=lifespan, exception_handlers={Exception: _error, HTTPException: _error,
                                                           JoeyError: _error})
    app.state.clock = clock
    service = OpsService(db, public_url, clock=lambda: app.state.clock())

    def admin(request: Request) -> None:
        presented = _bearer(request)
        if presented is None or not hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), admin_digest):
            raise Unauthorized("missing or wrong admin bearer token",
                               hint="send Authorization: Bearer $JOEY_OPS_TOKEN (the token joey-ops runs with)")

    def edge(request: Request) -> str:
        presented = _bearer(request)
        if presented is None:
            raise Unauthorized("missing edge credential", hint="send Authorization: Bearer CREDENTIAL from /edge/join")
        return presented

    def endpoint(model: type[BaseModel], call: Callable[[Any, Any], Any],
                 auth: Callable[[Request], Any] | None = admin) -> Callable[[Request], Awaitable[JSONResponse]]:
        """POST handler: authenticate before reading the body, parse it, run `call(auth result, body)` on a
        worker thread (the database calls block)."""
        async def handle(request: Request) -> JSONResponse:
            who = auth(request) if auth else None
            body = models.parse(model, await _json_body(request, max_body))
            return JSONResponse(await run_in_threadpool(call, who, body))
        return handle

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    remove = endpoint(models.EdgeName, lambda _, b: service.remove_edge(b.name))
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route(f"{API}/publish", endpoint(models.PublishRecord, lambda _, b: service.publish(b)), methods=["POST"]),
        Route(f"{API}/get_publish_status", endpoint(models.PublishId, lambda _, b: service.get_publish(b.value)),
              methods=["POST"]),
        Route(f"{API}/list_publishes_for_pipeline",
              endpoint(models.PipelineName, lambda _, b: service.list_publishes(b.pipeline_name)), methods=["POST"]),
        Route(f"{API}/add_edge_to_publish", endpoint(models.AddEdge, lambda _, b: service.add_edge(b)),
              methods=["POST"]),
        Route(f"{API}/remove_edge", remove, methods=["POST"]),
        Route(f"{API}/remove_edge_from_publish", remove, methods=["POST"]),
        Route(f"{API}/list_edges",
              endpoint(models.ListEdges, lambda _, b: {"edges": service.list_edges(b.pipeline_name)}),
              methods=["POST"]),
        Route(f"{API}/get_logs", endpoint(models.GetLogs, lambda _, b: service.get_logs(b)), methods=["POST"]),
        Route(f"{EDGE_PATH}/join", endpoint(models.Join, lambda _, b: service.join(b.edge, b.join_token), auth=None),
              methods=["POST"]),
        Route(f"{EDGE_PATH}/logs", endpoint(models.LogPage, lambda cred, b: service.ingest(cred, b), auth=edge),
              methods=["POST"]),
        Route(f"{EDGE_PATH}/checkin", endpoint(models.CheckIn, lambda cred, b: service.checkin(cred, b), auth=edge),
              methods=["POST"]),
        Route(f"{EDGE_PATH}/update_status",
              endpoint(models.UpdateStatus, lambda cred, b: service.report_update(cred, b), auth=edge),
              methods=["POST"]),
    ]
    app.router.routes.extend(routes)
    return app
