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
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from joey import opswire as models
from joey.errors import BadRequest, JoeyError, PayloadTooLarge, Unauthorized
from opscenter import assays, dashboard, ingest, metrics, openapi
from opscenter.db import Database
from opscenter.publisher import PublishSettings
from opscenter.rollup import Rollup, RollupSettings
from opscenter.schema import STATEMENTS
from opscenter.service import EDGE_PATH, OpsService

log = logging.getLogger("joey.ops")
API = "/v1/api/pipelines"
# Bodies parsed at once: parsing costs up to ~27x a body's size (docs/reliability.md, "Cost model"), so this, not
# the number of edges uploading, bounds what parsing can cost; further bodies wait their turn.
PARSE_SLOTS = 2
M = TypeVar("M", bound=BaseModel)


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def _read_body(request: Request, limit: int) -> bytearray:
    """At most `limit` bytes of body: a larger one is refused by its Content-Length, or as soon as it streams past
    the limit, so what Ops holds is never more than the route allows."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {limit} bytes for "
                              f"{request.url.path}")
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes for {request.url.path}")
        body += chunk
    return body


# JSON can spell NUL and UTF-16 surrogates only as these escapes (raw control characters are not JSON, raw
# surrogates not UTF-8), so bodies without one skip the walk over every string.
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_OR_NUL = re.compile("[\x00\ud800-\udfff]")


def _parse_body(model: type[M], raw: bytearray) -> M:
    """The body as `model`: strict UTF-8, JSON, text Ops can store, then the model's own checks. Runs on a worker
    thread, so a large body never holds up the event loop (and /healthz) for long."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"request body is not UTF-8 (byte {e.start}: {e.reason})") from None
    try:
        # NaN/Infinity (Python's json writes them) become null, as pandas' to_json writes them: answers stay JSON.
        value = json.loads(text or "{}", parse_constant=lambda _: None)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"request body is not JSON: {e}") from None
    if _RISKY_ESCAPE.search(text):
        _check_text(value, getattr(model, "documents", frozenset()))
    return models.parse(model, value)


def _check_text(value: Any, documents: frozenset[str]) -> None:
    """Refuse what Ops could neither store nor answer: a lone surrogate anywhere (it is no Unicode text, UTF-8
    cannot encode it) and NUL outside `documents` (PostgreSQL text cannot hold it; documents are stored escaped).
    The error names the top-level field: tracking the path to every string would cost more than the body."""
    fields = value.items() if isinstance(value, dict) else [("body", value)]
    for field, member in fields:
        inside = _SURROGATE if field in documents else _SURROGATE_OR_NUL
        for item, bad in ((field, _SURROGATE_OR_NUL), (member, inside)):
            found = _first_match(item, bad)
            if found is not None:
                what = "NUL (U+0000)" if found == "\0" else f"a lone surrogate (U+{ord(found):04X})"
                raise BadRequest(f"{_shown(field)}: its text holds {what}, which Ops cannot store",
                                 hint="send Unicode text: surrogates only in pairs (\\ud83d\\ude00), no NUL")


def _first_match(value: Any, bad: re.Pattern) -> str | None:
    """The first character `bad` matches in any string (key or value) within `value`."""
    stack = [value]
    while stack:  # not recursive: JSON nests as deep as the parser allows
        item = stack.pop()
        if isinstance(item, str):
            found = bad.search(item)
            if found:
                return found.group()
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _shown(key: str) -> str:
    """A key as an error message can name it: escaped when it is not printable, cut when long."""
    return (key if key.isprintable() else ascii(key))[:64]


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
               clock: Callable[[], float] = time.time, publishing: PublishSettings | None = None,
               rollup: RollupSettings | None = None) -> Starlette:
    """The app, its schema created. `app.state.clock` is read on every call, so tests can move time. With
    `publishing` (an edge registry) the app publishes registered pipeline versions itself, in the background;
    with `rollup` (an object store) it rolls logs past the hot window into Parquet there, in the background."""
    db = Database(database_url)
    db.create_schema(STATEMENTS)
    admin_digest = hashlib.sha256(admin_token.encode()).digest()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.start()
        yield
        await run_in_threadpool(service.stop)
        db.close()

    app = Starlette(lifespan=lifespan, exception_handlers={Exception: _error, HTTPException: _error,
                                                           JoeyError: _error})
    app.state.clock = clock
    service = OpsService(db, public_url, clock=lambda: app.state.clock(), publishing=publishing,
                         rollup=Rollup(db, rollup, lambda: app.state.clock()) if rollup else None)
    parsing = anyio.CapacityLimiter(PARSE_SLOTS)

    def admin(request: Request) -> None:
        presented = _bearer(request)
        if presented is None or not hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), admin_digest):
            raise Unauthorized("missing or wrong admin bearer token",
                               hint="send Authorization: Bearer $JOEY_OPS_TOKEN (the token joey-ops runs with)")

    def edge(request: Request) -> str:
        presented = _bearer(request)
        if presented is None:
            raise Unauthorized("missing edge credential", hint="send Authorization: Bearer CREDENTIAL from /edge/join")
        service.authenticate(presented)
        return presented

    def endpoint(model: type[BaseModel], call: Callable[[Any, Any], Any],
                 auth: Callable[[Request], Any] | None = admin,
                 arrow: Callable[[bytearray], Any] | None = None) -> Callable[[Request], Awaitable[JSONResponse]]:
        """POST handler: authenticate (an edge's credential is looked up), then read at most the model's
        `max_bytes` of body, parse it (by `arrow` when given and the body is an Arrow stream) and run
        `call(auth result, body)`, each on a worker thread (the database calls block)."""
        limit = getattr(model, "max_bytes", models.MAX_ADMIN_BYTES)

        async def handle(request: Request) -> JSONResponse:
            who = await run_in_threadpool(auth, request) if auth else None
            raw = await _read_body(request, limit)
            media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
            if arrow is not None and media == models.LOG_PAGE_MEDIA_TYPE:
                body = await anyio.to_thread.run_sync(arrow, raw, limiter=parsing)
            else:
                body = await anyio.to_thread.run_sync(_parse_body, model, raw, limiter=parsing)
            return JSONResponse(await run_in_threadpool(call, who, body))
        return handle

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    remove = endpoint(models.EdgeName, lambda _, b: service.remove_edge(b.name))
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        openapi.route(),   # GET /openapi.json
        Route(f"{API}/publish", endpoint(models.PublishBody, lambda _, b: service.publish(b.root)), methods=["POST"]),
        Route(f"{API}/get_publish_status", endpoint(models.PublishId, lambda _, b: service.get_publish(b.value)),
              methods=["POST"]),
        Route(f"{API}/list_publishes_for_pipeline",
              endpoint(models.PipelineRef, lambda _, b: service.list_publishes(b.given)), methods=["POST"]),
        Route(f"{API}/list_pipelines",
              endpoint(models.ListPipelines, lambda _, b: service.list_pipelines(b.pipeline_name)), methods=["POST"]),
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
        Route(f"{EDGE_PATH}/logs", endpoint(models.LogPage, lambda cred, b: service.ingest(cred, b), auth=edge,
                                            arrow=ingest.decode_arrow), methods=["POST"]),
        Route(f"{EDGE_PATH}/checkin", endpoint(models.CheckIn, lambda cred, b: service.checkin(cred, b), auth=edge),
              methods=["POST"]),
        Route(f"{EDGE_PATH}/update_status",
              endpoint(models.UpdateStatus, lambda cred, b: service.report_update(cred, b), auth=edge),
              methods=["POST"]),
    ]
    routes += dashboard.routes(service, assays.attach(app, db, endpoint), admin_token)
    app.router.routes.extend(routes)
    metrics.install(app, db, lambda: app.state.clock())   # GET /metrics (docs/ops.md, "Metrics")
    return app
