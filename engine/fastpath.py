"""POST /infer and POST /pipelines/{name} as a bare ASGI handler in front of the Starlette app.

An inference request is most of the engine's traffic and mostly one row: Starlette's routing, middleware and
Request/Response objects cost more CPU than decoding, running and encoding that row (bench/, docs/performance.md).
This handler reads the scope and the body itself and sends the answer as raw ASGI messages; every other
request, and these paths with another method, go to the wrapped app unchanged, so routes added to it work as
before. Errors leave in the app's format, {"error": "..."}, through the same `error_payload`.
"""
from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.codecs import PANDAS_RECORDS, REQUEST_TYPES, MediaType, negotiate
from engine.limits import Limits
from engine.runtime import Pipeline
from engine.service import Engine
from joey import envvars
from joey.errors import JoeyError, NotFound, PayloadTooLarge, UnsupportedMediaType

_NAMED = "/pipelines/"
_JSON = b"application/json"


class InferEndpoint:
    """The ASGI app: inference requests here, the rest to `app` (whose attributes it forwards, so that code
    adding routes to the Starlette app it was given keeps working)."""

    def __init__(self, app: ASGIApp, engine: Engine, limits: Limits, error_payload: Any):
        self.app = app
        self.engine = engine
        self.limits = limits
        self.error_payload = error_payload   # (exc, method, path) -> (status, message); server.py's

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" and scope["method"] == "POST" else ""
        if path == "/infer":
            name, route = None, path
        elif path.startswith(_NAMED) and "/" not in path[len(_NAMED):] and len(path) > len(_NAMED):
            name, route = path[len(_NAMED):], _NAMED + "{name}"
        else:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500   # what the client gets if this raises before answering
        try:
            status = await self._serve(name, path, scope, receive, send, started)
        finally:   # counted like the app's routes (engine.metrics.RequestMetrics)
            self.engine.metrics.request(route, status, time.perf_counter() - started)

    async def _serve(self, name: str | None, path: str, scope: Scope, receive: Receive, send: Send,
                     started: float) -> int:
        """Answer one inference request; its status."""
        try:
            headers = dict(scope["headers"])
            answer = await self._answer(name, headers, receive)
        except ClientDisconnect:
            raise
        except Exception as e:
            status, message = self.error_payload(e, "POST", path)
            await _respond(send, status, _JSON, [orjson.dumps({"error": message})])
            if not isinstance(e, JoeyError):
                raise   # as Starlette does: answered 500, re-raised so that the server logs the traceback
            return status
        media, chunks = answer
        # Time from the request's headers to its answer being ready, body upload included.
        timing = b"engine;dur=%.2f" % ((time.perf_counter() - started) * 1e3)
        await _respond(send, 200, media.encode("latin-1"), chunks, timing)
        return 200

    async def _answer(self, name: str | None, headers: dict[bytes, bytes],
                      receive: Receive) -> tuple[str, list[bytes | memoryview]]:
        # The name is checked against the pipeline that runs the request: an in-line update may swap another in.
        pipeline: Pipeline = self.engine.require_pipeline()
        if name is not None and name != pipeline.config.name:
            raise NotFound(f"pipeline {name!r}", hint=f"this engine serves {pipeline.config.name!r}; or use /infer")
        raw_type = headers.get(b"content-type")
        content_type = raw_type.decode("latin-1") if raw_type is not None else None
        kind = MediaType.parse(content_type or "").kind
        if kind is None:
            raise UnsupportedMediaType(content_type or "(none)", REQUEST_TYPES)
        accept = headers.get(b"accept")
        answer = negotiate(accept.decode("latin-1") if accept is not None else None)
        # JSON costs far more to parse than its size, so it has a bound of its own, checked as it streams in.
        limit, variable = self.engine.settings.max_body, envvars.MAX_BODY
        if kind == PANDAS_RECORDS and self.limits.max_json_body < limit:
            limit, variable = self.limits.max_json_body, envvars.MAX_JSON_BODY
        body = await read_body(receive, headers.get(b"content-length"), limit, variable)
        return answer, await self.engine.answer(pipeline, body, content_type, answer)


async def read_body(receive: Receive, declared: bytes | None, limit: int, variable: str) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `limit` (declared or counted)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge.over_limit(limit, int(declared), variable)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    body = message.get("body", b"")
    if not message.get("more_body", False):   # the whole body in one message: the common case, no copy
        if len(body) > limit:
            raise PayloadTooLarge.over_limit(limit, variable=variable)
        return body
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge.over_limit(limit, variable=variable)
        chunks.append(chunk)
    return b"".join(chunks)


async def _respond(send: Send, status: int, media: bytes, chunks: list[bytes | memoryview],
                   timing: bytes | None = None) -> None:
    length = sum(len(c) if isinstance(c, bytes) else c.nbytes for c in chunks)
    headers = [(b"content-type", media), (b"content-length", b"%d" % length)]
    if timing is not None:
        headers.append((b"server-timing", timing))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk, "more_body": i < last})
