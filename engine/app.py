"""Running the engine: logging, the ASGI app with its lifespan, uvicorn, signals, the exit code.

`run(settings)` is the one entry point: `joey-engine` / `python -m engine` and `packager serve` both call it.
"""
from __future__ import annotations

import logging
import signal
import sys
from contextlib import asynccontextmanager
from types import FrameType

import uvicorn

from engine.connections import quiet_disconnects, with_deadlines
from engine.server import build_app
from engine.service import Engine
from engine.settings import Settings
from joey.errors import JoeyError

log = logging.getLogger("engine")
# The largest request line plus headers (h11's default, which the engine served with before): a longer head is
# answered 400.
MAX_HEAD_BYTES = 16 * 1024


class _Format(logging.Formatter):
    """Start-up lines exactly as the seeds print them; warnings and errors say what they are."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname}: {text}"


def configure_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Format("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # uvicorn's access log only when debugging: at thousands of requests a second it is the bottleneck.
    logging.getLogger("uvicorn.access").disabled = not debug


class _Server(uvicorn.Server):
    """uvicorn's server, marking the engine not ready the moment a stop signal arrives; it then drains
    in-flight requests and `run` returns 0 (uvicorn itself would re-raise the signal once done)."""

    def __init__(self, config: uvicorn.Config, engine: Engine):
        super().__init__(config)
        self.engine = engine

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.engine.draining = True
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True   # a second Ctrl-C: stop waiting for in-flight requests
        self.should_exit = True


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT (0) or until the pipeline cannot be loaded (that error's exit code)."""
    configure_logging(settings.debug)
    engine = Engine(settings)
    failure: list[BaseException] = []
    server: _Server | None = None

    def on_fatal(e: BaseException) -> None:
        failure.append(e)
        log.error("%s", e.one_line() if isinstance(e, JoeyError) else f"{type(e).__name__}: {e}",
                  exc_info=None if isinstance(e, JoeyError) else e)
        if server is not None:
            server.should_exit = True

    @asynccontextmanager
    async def lifespan(app):
        engine.start_loading(on_fatal)
        engine.start_uploading()
        try:
            yield
        finally:
            engine.close()

    # Connections (docs/engine-api.md): deadlines for slow requests, idle keep-alive, the open-connection cap
    # and the largest request head, on httptools (C) and uvloop: on the one-row path uvicorn's pure-Python h11
    # and asyncio's default loop cost more CPU than the inference (docs/performance.md).
    config = uvicorn.Config(quiet_disconnects(build_app(engine, lifespan)), host=settings.host, port=settings.port,
                            log_config=None, access_log=settings.debug, server_header=False,
                            timeout_graceful_shutdown=None, loop="uvloop",
                            http=with_deadlines(settings.header_timeout, settings.body_timeout, MAX_HEAD_BYTES),
                            timeout_keep_alive=settings.keep_alive_timeout, limit_concurrency=settings.max_connections)
    server = _Server(config, engine)
    try:
        engine.open_store()
    except JoeyError as e:
        log.error("%s", e.one_line())
        return e.exit_code
    server.run()
    if failure:
        e = failure[0]
        return e.exit_code if isinstance(e, JoeyError) else 1
    return 0 if server.started else 1
