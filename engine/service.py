"""The engine without HTTP: settings, the inference-log store, the pipeline once it is loaded, readiness.

Loading runs on a thread of its own so the server answers /health and /ready (503) meanwhile; a registry that
cannot be reached is retried with backoff, anything else ends the process with the error's exit code.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Callable

import pyarrow as pa

from packager import envvars
from packager.errors import ConfigError, JoeyError

from .codecs import ARROW_FILE, PANDAS_RECORDS, decode_request, encode
from .errors import NotReady
from .fetch import Fetched, fetch, is_transient
from .logstore import LogStore
from .runtime import Pipeline
from .settings import Settings
from .uploader import Uploader, for_edge

log = logging.getLogger("engine")

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


class Engine:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store: LogStore | None = None
        self.pipeline: Pipeline | None = None
        self.uploader: Uploader | None = None   # with EDGE_BUNDLE: enrolls, then sends the logs to Ops
        self.draining = False          # set on SIGTERM: not ready any more, in-flight requests finish
        self._reason = "the pipeline is being fetched"
        self._stop = threading.Event()
        self._appender = ThreadPoolExecutor(max_workers=4, thread_name_prefix="log-append")

    # ------------------------------------------------------------------------------------------- lifecycle
    def open_store(self) -> None:
        try:
            self.store = LogStore(self.settings.logs_dir, self.settings.log_capacity)
        except OSError as e:
            raise ConfigError(envvars.PERSIST_DIR, f"cannot keep inference logs in {self.settings.logs_dir}: "
                                                   f"{e.strerror or e}") from None

    def start_uploading(self) -> None:
        """With EDGE_BUNDLE: enroll and send the inference logs to Ops on a thread of its own; inference never
        waits for it."""
        self.uploader = for_edge(self.settings, self._require_store())
        if self.uploader is not None:
            self.uploader.start()

    def close(self) -> None:
        self._stop.set()
        if self.uploader is not None:   # before the store closes: the page in flight is acknowledged first
            self.uploader.stop()
        self._appender.shutdown(wait=True)
        if self.store is not None:
            self.store.close()

    def start_loading(self, on_fatal: Callable[[BaseException], None]) -> threading.Thread:
        thread = threading.Thread(target=self._load, args=(on_fatal,), name="pipeline-loader", daemon=True)
        thread.start()
        return thread

    def _load(self, on_fatal: Callable[[BaseException], None]) -> None:
        try:
            fetched = self._fetch_with_retries()
            if fetched is None:
                return
            config = fetched.config
            log.info("Starting engine")
            threads = self.settings.threads(config.engine.cpus)
            pipeline = Pipeline(config, fetched.directory, threads, partition=self.settings.partition,
                                digest=fetched.digest)
            self._warm_up(pipeline)
            self.pipeline = pipeline
            log.info("Engine ready: pipeline %s version %s (%s), %d step(s), %d onnxruntime thread(s)%s",
                     config.name, config.version, fetched.digest, len(config.steps), threads,
                     " [from cache]" if fetched.from_cache else "")
        except BaseException as e:  # noqa: BLE001 - whatever stops loading must end the process visibly
            self._reason = f"loading failed: {e}"
            on_fatal(e)

    @staticmethod
    def _warm_up(pipeline: Pipeline) -> None:
        sample = pipeline.sample()
        if sample is None:
            return
        try:
            result = pipeline.run(sample)
        except JoeyError as e:   # a model may refuse zeros; real requests will tell
            log.debug("warm-up run skipped: %s", e.one_line())
            return
        for kind in (PANDAS_RECORDS, ARROW_FILE):
            encode(result, kind)

    def _fetch_with_retries(self) -> Fetched | None:
        delay = RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                return fetch(self.settings)
            except Exception as e:
                if not is_transient(e):
                    raise
                detail = e.one_line() if isinstance(e, JoeyError) else f"{type(e).__name__}: {e}"
                self._reason = f"cannot fetch {self.settings.pipeline_url} yet ({detail}); retrying"
                log.warning("%s; no cached pipeline to serve; retrying in %.0fs", detail, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        return None

    # ------------------------------------------------------------------------------------------ operations
    def require_pipeline(self) -> Pipeline:
        if self.draining:
            raise NotReady("the engine is shutting down")
        if self.pipeline is None:
            raise NotReady(self._reason)
        return self.pipeline

    def infer(self, pipeline: Pipeline, body: bytes, content_type: str | None, answer: str) -> bytes | memoryview:
        """Decode, run, record (durably, before anything is answered) and encode one request.

        The log append (an fsync) and the encoding overlap: the answer waits for both.
        """
        t0 = time.perf_counter_ns()
        table = decode_request(body, content_type)
        result = pipeline.run(table, read_ns=time.perf_counter_ns() - t0)
        appended = self._appender.submit(self._record, result)
        try:
            content = encode(result, answer)
        finally:
            appended.result()
        return content

    def _record(self, result: pa.Table) -> None:
        self._require_store().append(result)
        if self.uploader is not None:
            self.uploader.notify()

    def status(self) -> dict[str, Any]:
        """GET /status: the log store's counters and, with EDGE_BUNDLE, the uploader's (docs/ops.md)."""
        return {"logs": asdict(self._require_store().stats()),
                "upload": self.uploader.status() if self.uploader is not None else None}

    def logs(self, limit: int | None, answer: str) -> bytes | memoryview:
        table: pa.Table = self._require_store().read(limit)
        return encode(table, answer)

    def _require_store(self) -> LogStore:
        if self.store is None:
            raise NotReady("the inference log store is not open")
        return self.store
