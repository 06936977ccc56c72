"""The engine's HTTP API (Starlette): the seeds' edge endpoints plus /health, /ready and /metrics.

Handlers check what they can from the headers before reading a body, read it against the size limit, and run
the blocking work (decoding, onnxruntime, the durable log append, encoding) on a worker thread so the event
loop keeps answering. Every error, ours or Starlette's, leaves through `error_response` as {"error": "..."}.
"""
from __future__ import annotations

import logging
import time
from contextlib import AbstractAsyncContextManager
from typing import Any, Callable

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from joey.errors import JoeyError, NotFound

from joey import envvars

from engine.codecs import PANDAS_RECORDS, REQUEST_TYPES, MediaType, negotiate
from engine.limits import current as current_limits
from engine.metrics import RequestMetrics
from joey.errors import BadLogsQuery, BodyTooLarge, NotReady, UnsupportedMediaType
from engine.runtime import Pipeline
from engine.service import Engine

log = logging.getLogger("engine")

# A /logs answer with older records left names, in this header, the `before` that asks for them.
LOGS_BEFORE_HEADER = "Joey-Logs-Before"
# A /logs body is a small JSON object; nothing larger is read.
_LOGS_QUERY_BYTES = 4096


def build_app(engine: Engine, lifespan: Callable[[Starlette], AbstractAsyncContextManager] | None = None) -> Starlette:
    limits = current_limits()   # read here, so a bad value stops the start-up, not a request
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

    async def infer(request: Request) -> Response:
        return await _infer(request, engine.require_pipeline())

    async def infer_named(request: Request) -> Response:
        # The name is checked against the pipeline that runs the request: an in-line update may swap another in.
        p = engine.require_pipeline()
        name = request.path_params["name"]
        if name != p.config.name:
            raise NotFound(f"pipeline {name!r}", hint=f"this engine serves {p.config.name!r}; or use /infer")
        return await _infer(request, p)

    async def _infer(request: Request, pipeline: Pipeline) -> Response:
        started = time.perf_counter()
        content_type = request.headers.get("content-type")
        if MediaType.parse(content_type or "").kind is None:
            raise UnsupportedMediaType(content_type or "(none)", REQUEST_TYPES)
        answer = negotiate(request.headers.get("accept"))
        # JSON costs far more to parse than its size, so it has a bound of its own, checked as it streams in.
        limit, variable = engine.settings.max_body, envvars.MAX_BODY
        if MediaType.parse(content_type or "").kind == PANDAS_RECORDS and limits.max_json_body < limit:
            limit, variable = limits.max_json_body, envvars.MAX_JSON_BODY
        body = await read_body(request, limit, variable)
        content = await run_in_threadpool(engine.infer, pipeline, body, content_type, answer)
        # Time from the request's headers to its answer being ready, body upload included.
        timing = f"engine;dur={(time.perf_counter() - started) * 1e3:.2f}"
        return Response(content, media_type=answer, headers={"Server-Timing": timing})

    async def logs(request: Request) -> Response:
        answer = negotiate(request.headers.get("accept"))
        limit, before = _logs_query(await read_body(request, _LOGS_QUERY_BYTES), limits.logs_max_records)
        content, window = await run_in_threadpool(engine.logs, limit, before, limits.logs_max_bytes, answer)
        headers = {LOGS_BEFORE_HEADER: str(window.seq_start)} if window.more else None
        return Response(content, media_type=answer, headers=headers)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        Route("/pipelines", pipelines, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/infer", infer, methods=["POST"]),
        Route("/pipelines/{name}", infer_named, methods=["POST"]),
        Route("/logs", logs, methods=["POST"]),
        Route("/metrics", engine.metrics.endpoint, methods=["GET"]),
    ]
    handlers: dict[Any, Callable] = {JoeyError: error_response, HTTPException: error_response,
                                     Exception: error_response}
    counting = Middleware(RequestMetrics, metrics=engine.metrics, routes=routes)
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan, middleware=[counting])


async def read_body(request: Request, limit: int, variable: str = envvars.MAX_BODY) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `limit` (declared or counted);
    the error names `variable`, which sets the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, int(declared), variable)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, variable=variable)
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


async def error_response(request: Request, exc: Exception) -> Response:
    """The one place errors become answers: JoeyError by its http_status, Starlette's by theirs, else 500."""
    if isinstance(exc, JoeyError):
        status, message = exc.http_status, exc.one_line()
        if status >= 500 and not isinstance(exc, NotReady):   # not-ready answers are expected while loading
            log.error("%s %s: %s", request.method, request.url.path, message)
    elif isinstance(exc, HTTPException):
        status, message = exc.status_code, f"{exc.detail}: {request.method} {request.url.path}"
    else:
        # Starlette re-raises it after this answer, so the server logs the traceback.
        status, message = 500, f"internal error ({type(exc).__name__}); see the engine's log"
    return JSONResponse({"error": message}, status_code=status,
                        headers=getattr(exc, "headers", None) if isinstance(exc, HTTPException) else None)
