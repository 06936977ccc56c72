"""The engine's HTTP API: the seeds' edge endpoints plus /health, /ready, /metrics, the Open Inference
Protocol v2 (engine.oip) and /openapi.json (engine.openapi).

Inference (POST /infer, POST /pipelines/{name}) is a bare ASGI handler in front of the Starlette app
(engine/fastpath.py); the other routes are Starlette's. Handlers check what they can from the headers before
reading a body and read it against the size limit; blocking work runs off the event loop unless it is small
(engine.service). Every error, ours or Starlette's, leaves through `error_payload` as {"error": "..."}.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine import oip, openapi
from engine.codecs import negotiate
from engine.fastpath import InferEndpoint
from engine.limits import current as current_limits
from engine.metrics import RequestMetrics
from engine.service import Engine
from joey import envvars
from joey.errors import BadLogsQuery, JoeyError, NotReady, PayloadTooLarge

log = logging.getLogger("engine")

# A /logs answer with older records left names, in this header, the `before` that asks for them.
LOGS_BEFORE_HEADER = "Joey-Logs-Before"
# A /logs body is a small JSON object; nothing larger is read.
_LOGS_QUERY_BYTES = 4096


def build_app(engine: Engine,
              lifespan: Callable[[Starlette], AbstractAsyncContextManager] | None = None) -> InferEndpoint:
    limits = current_limits()   # read here, so a bad value stops the start-up, not a request
    document = openapi.document()
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        p = engine.require_pipeline()
        return JSONResponse({"status": "ready", "pipeline": p.config.name, "version": p.config.version,
                             "digest": p.digest})

    async def status(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(engine.status))

    async def pipelines(request: Request) -> Response:
        p = engine.require_pipeline()
        return JSONResponse({"pipelines": [{"id": p.config.name, "version": p.config.version,
                                            "status": "Running"}]})

    async def models(request: Request) -> Response:
        p = engine.require_pipeline()
        return JSONResponse({"models": [{"name": s.name, "sha": s.model.sha256, "status": "Running",
                                         "version": s.model_version} for s in p.config.steps]})

    async def logs(request: Request) -> Response:
        answer = negotiate(request.headers.get("accept"))
        limit, before = _logs_query(await read_body(request, _LOGS_QUERY_BYTES), limits.logs_max_records)
        content, window = await run_in_threadpool(engine.logs, limit, before, limits.logs_max_bytes, answer)
        headers = {LOGS_BEFORE_HEADER: str(window.seq_start)} if window.more else None
        return Response(content, media_type=answer, headers=headers)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        Route("/pipelines", pipelines, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/logs", logs, methods=["POST"]),
        Route("/metrics", engine.metrics.endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *oip.routes(engine),
    ]
    handlers: dict[Any, Callable] = {JoeyError: error_response, HTTPException: error_response,
                                     Exception: error_response}
    counting = Middleware(RequestMetrics, metrics=engine.metrics, routes=routes)
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan, middleware=[counting])
    return InferEndpoint(app, engine, limits, error_payload)


async def read_body(request: Request, limit: int, variable: str = envvars.MAX_BODY) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `limit` (declared or counted);
    the error names `variable`, which sets the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge.over_limit(limit, int(declared), variable)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge.over_limit(limit, variable=variable)
        chunks.append(chunk)
    return b"".join(chunks)


def _logs_query(body: bytes, max_records: int) -> tuple[int, int | None]:
    """(limit, before) of a /logs body: `limit` cut to `max_records`, `before` a sequence number or None."""
    if not body.strip():
        return max_records, None
    try:
        query = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadLogsQuery(f"the body is not JSON ({e})") from None
    if not isinstance(query, dict):
        raise BadLogsQuery(f"expected a JSON object, got {type(query).__name__}")
    limit = query.get("limit", max_records)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise BadLogsQuery(f"limit must be a positive whole number, got {limit!r}")
    before = query.get("before")
    if before is not None and (isinstance(before, bool) or not isinstance(before, int) or before < 0):
        raise BadLogsQuery(f"before must be a sequence number (the {LOGS_BEFORE_HEADER} header of an answer), "
                           f"got {before!r}")
    return min(limit, max_records), before


def error_payload(exc: Exception, method: str, path: str) -> tuple[int, str]:
    """(status, message) of an error: JoeyError by its http_status, Starlette's by theirs, else 500."""
    if isinstance(exc, JoeyError):
        status, message = exc.http_status, exc.one_line()
        if status >= 500 and not isinstance(exc, NotReady):   # not-ready answers are expected while loading
            log.error("%s %s: %s", method, path, message)
        return status, message
    if isinstance(exc, HTTPException):
        return exc.status_code, f"{exc.detail}: {method} {path}"
    # The server logs the traceback: Starlette and engine/fastpath.py re-raise it after this answer.
    return 500, f"internal error ({type(exc).__name__}); see the engine's log"


async def error_response(request: Request, exc: Exception) -> Response:
    """The one place Starlette's errors become answers, {"error": "..."}."""
    status, message = error_payload(exc, request.method, request.url.path)
    return JSONResponse({"error": message}, status_code=status,
                        headers=getattr(exc, "headers", None) if isinstance(exc, HTTPException) else None)
