"""The engine without HTTP: settings, the inference-log store, the pipeline it serves, readiness, and its
background loops (the log uploader and the in-line updater, over one client of Ops).

Loading runs on a thread of its own so the server answers /health and /ready (503) meanwhile; a registry that
cannot be reached is retried with backoff, anything else ends the process with the error's exit code. Once a
pipeline serves, engine.updates may swap a replacement in (`swap`): every request runs on the pipeline it
found when it started.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from engine.codecs import ARROW_FILE, PANDAS_RECORDS, decode_request, encode
from engine.codecs.answer import encode_chunks
from engine.edge_client import EdgeClient
from engine.fetch import Fetched, PipelineCache, commit, fetch, is_transient, last_good
from engine.limits import current as current_limits
from engine.logbatch import LogBatcher
from engine.logstore import LogStore, Window
from engine.metrics import EngineMetrics
from engine.runtime import Pipeline
from engine.serving import Serving
from engine.settings import Settings
from engine.updates import Updater, smoke_test
from engine.uploader import Uploader, for_edge
from joey import envvars
from joey.errors import ConfigError, JoeyError, NotReady

log = logging.getLogger("engine")

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
# A request body up to this size is decoded, run and encoded on the event loop itself: a thread hop (a GIL
# hand-over on a one-core edge) costs more than the work. Measured on the generated ccfraud pipeline, on a
# loaded 2-core machine (decode + run + encode, CPU): 1 JSON row (580 B) 0.5 ms, 14 JSON rows (8 KiB) 0.8 ms,
# a 64-row Arrow file (8 KiB) 1.1 ms, 128 JSON rows 2 ms. Past about a millisecond the loop would stall the
# other connections' reads, so larger bodies go to a worker thread.
SMALL_BODY_BYTES = 8 * 1024


class Engine:
    """The engine's state: what serves (`serving`, swapped whole by the updater), the log store, and with
    EDGE_BUNDLE the one client of Ops that the uploader and the updater share (`ops`). An HTTP layer
    (engine.server) calls require_pipeline/infer/logs/status; engine.app runs the lifecycle."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store: LogStore | None = None
        self.serving: Serving | None = None
        bundle = settings.edge_bundle
        self.ops = EdgeClient(bundle, settings.persist_dir) if bundle is not None else None
        self.uploader: Uploader | None = None   # with EDGE_BUNDLE: enrolls, then sends the logs to Ops
        self.updater: Updater | None = None     # once the first pipeline is fetched (looks if the interval > 0)
        self.draining = False          # set on SIGTERM: not ready any more, in-flight requests finish
        self._reason = "the pipeline is being fetched"
        self._stop = threading.Event()
        self._appender = ThreadPoolExecutor(max_workers=4, thread_name_prefix="log-append")
        self._batcher = LogBatcher(self._record)
        # Large requests: one at a time per onnxruntime core would do; two let a decode overlap a run.
        self._workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="infer")
        self.metrics = EngineMetrics(self)   # GET /metrics; reads the state above when scraped

    # ------------------------------------------------------------------------------------------- lifecycle
    def open_store(self) -> None:
        try:
            self.store = LogStore(self.settings.logs_dir, self.settings.log_capacity,
                                  max_segments=current_limits().log_max_segments)
        except OSError as e:
            raise ConfigError(envvars.PERSIST_DIR, f"cannot keep inference logs in {self.settings.logs_dir}: "
                                                   f"{e.strerror or e}") from None

    def start_uploading(self) -> None:
        """With EDGE_BUNDLE: enroll and send the inference logs to Ops on a thread of its own; inference never
        waits for it."""
        if self.ops is not None:
            self.uploader = for_edge(self.settings, self._require_store(), self.ops)
            self.uploader.start()

    def close(self) -> None:
        self._stop.set()
        if self.updater is not None:
            self.updater.stop()
        if self.uploader is not None:   # before the store closes: the page in flight is acknowledged first
            self.uploader.stop()
        if self.ops is not None:
            self.ops.close()
        self._workers.shutdown(wait=True)
        self._batcher.close()
        self._appender.shutdown(wait=True)
        if self.store is not None:
            self.store.close()

    def start_loading(self, on_fatal: Callable[[BaseException], None]) -> threading.Thread:
        thread = threading.Thread(target=self._load, args=(on_fatal,), name="pipeline-loader", daemon=True)
        thread.start()
        return thread

    def _load(self, on_fatal: Callable[[BaseException], None]) -> None:
        try:
            settings = self._resumed()
            fetched = self._fetch_with_retries(settings)
            if fetched is None:
                return
            log.info("Starting engine")
            self.updater = Updater(self, self.settings, settings.pipeline_url, self.ops)
            pipeline, fetched = self._first(settings, fetched)
            if not fetched.from_cache:
                commit(settings, fetched, self.settings.pipeline_url)
            self.serving = Serving(pipeline, fetched, time.time())
            config = fetched.config
            log.info("Engine ready: pipeline %s version %s (%s), %d step(s), %d onnxruntime thread(s)%s",
                     config.name, config.version, fetched.digest, len(config.steps),
                     self.settings.threads(config.engine.cpus), " [from cache]" if fetched.from_cache else "")
            if self.settings.update_interval > 0 and not self._stop.is_set():
                self.updater.start()
        except BaseException as e:  # noqa: BLE001 - whatever stops loading must end the process visibly
            self._reason = f"loading failed: {e}"
            on_fatal(e)

    def _first(self, settings: Settings, fetched: Fetched) -> tuple[Pipeline, Fetched]:
        """The pipeline to start with, loaded. When PIPELINE_URL names another pipeline than the one served last
        under the same PIPELINE_URL (its tag moved while the engine was down), that one is a replacement like
        any in-line update: it must pass the smoke test, and if it cannot be served the last good one is."""
        good = None if fetched.from_cache else last_good(settings, self.settings.pipeline_url)
        if good is None or good.digest == fetched.digest:
            return self.prepare(fetched), fetched
        started = time.monotonic()
        try:
            pipeline = self.prepare(fetched)
            smoke_test(pipeline)
            return pipeline, fetched
        except JoeyError as e:
            self.updater.refused(settings.pipeline_url, fetched.digest, fetched, e, time.monotonic() - started, good)
        return self.prepare(good), good

    def _resumed(self) -> Settings:
        """The settings to start with: PIPELINE_URL's, unless an in-line update moved this edge from it to
        another URL (Ops named a replacement publish); then that one, which a restart must not undo. A new
        PIPELINE_URL (helm upgrade, a new docker run) is simply loaded."""
        entry = PipelineCache(self.settings.pipelines_dir).current()
        configured = self.settings.pipeline_url
        if not entry or entry.get("configured_url") != configured or entry.get("pipeline_url") in (None, configured):
            return self.settings
        log.info("PIPELINE_URL %s was updated in-line to %s; starting with that", configured, entry["pipeline_url"])
        return self.settings.for_url(entry["pipeline_url"])

    def prepare(self, fetched: Fetched) -> Pipeline:
        """The fetched pipeline loaded into onnxruntime and warmed up, not serving yet."""
        threads = self.settings.threads(fetched.config.engine.cpus)
        pipeline = Pipeline(fetched.config, fetched.directory, threads, partition=self.settings.partition,
                            digest=fetched.digest)
        self._warm_up(pipeline)
        return pipeline

    def swap(self, pipeline: Pipeline, fetched: Fetched) -> Pipeline:
        """Serve `pipeline` from the next request on; the one it replaces (requests in flight finish on it)."""
        old = self.serving
        assert old is not None, "swap() replaces a serving pipeline"
        self.serving = Serving(pipeline, fetched, time.time())
        return old.pipeline

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

    def _fetch_with_retries(self, settings: Settings) -> Fetched | None:
        delay = RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                return fetch(settings)
            except Exception as e:
                if not is_transient(e):
                    raise
                detail = e.one_line() if isinstance(e, JoeyError) else f"{type(e).__name__}: {e}"
                self._reason = f"cannot fetch {settings.pipeline_url} yet ({detail}); retrying"
                log.warning("%s; no cached pipeline to serve; retrying in %.0fs", detail, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        return None

    # ------------------------------------------------------------------------------------------ operations
    def require_pipeline(self) -> Pipeline:
        if self.draining:
            raise NotReady("the engine is shutting down")
        serving = self.serving
        if serving is None:
            raise NotReady(self._reason)
        return serving.pipeline

    async def answer(self, pipeline: Pipeline, body: bytes, content_type: str | None,
                     answer: str) -> list[bytes | memoryview]:
        """Decode, run, record (durably, before anything is answered) and encode one request; the answer as
        buffers to send one after the other. Small bodies run on the event loop, their record group-committed
        with other requests' (LogBatcher); large ones on a worker thread (`infer`)."""
        if len(body) > SMALL_BODY_BYTES:
            return await asyncio.get_running_loop().run_in_executor(self._workers, self.infer, pipeline, body,
                                                                    content_type, answer)
        t0 = time.perf_counter_ns()
        table = decode_request(body, content_type)
        decode_ns = time.perf_counter_ns() - t0
        result = pipeline.run(table, read_ns=decode_ns)
        appended = self._batcher.submit(result)
        try:
            t1 = time.perf_counter_ns()
            content = encode(result, answer)
            encode_ns = time.perf_counter_ns() - t1
        finally:
            append_ns = await appended
        self.metrics.inferred(pipeline, result, (len(body), len(content)), decode_ns, encode_ns, append_ns)
        return [content]

    def infer(self, pipeline: Pipeline, body: bytes, content_type: str | None,
              answer: str) -> list[bytes | memoryview]:
        """`answer` on a worker thread: the log append (an fsync) on the appender overlaps the encoding (in
        chunks, engine.codecs.answer.encode_chunks), and the answer waits for both."""
        t0 = time.perf_counter_ns()
        table = decode_request(body, content_type)
        decode_ns = time.perf_counter_ns() - t0
        result = pipeline.run(table, read_ns=decode_ns)
        appended = self._appender.submit(self._record, result)
        try:
            t1 = time.perf_counter_ns()
            chunks = encode_chunks(result, answer)
            encode_ns = time.perf_counter_ns() - t1
        finally:
            append_ns = appended.result()
        size = sum(len(c) if isinstance(c, bytes) else c.nbytes for c in chunks)
        self.metrics.inferred(pipeline, result, (len(body), size), decode_ns, encode_ns, append_ns)
        return chunks

    async def run_recorded(self, pipeline: Pipeline, decode: Callable[[], pa.Table],
                           encode: Callable[[pa.Table], bytes], size: int) -> bytes:
        """A request of another protocol (engine.oip) down the path of `answer`: `decode` reads the request
        table, the pipeline runs it (both on a worker thread past SMALL_BODY_BYTES), the result is recorded
        durably, then `encode` makes the answer of it."""
        def decode_and_run() -> tuple[pa.Table, int]:
            t0 = time.perf_counter_ns()
            table = decode()
            decode_ns = time.perf_counter_ns() - t0
            return pipeline.run(table, read_ns=decode_ns), decode_ns

        if size > SMALL_BODY_BYTES:
            result, decode_ns = await asyncio.get_running_loop().run_in_executor(self._workers, decode_and_run)
        else:
            result, decode_ns = decode_and_run()
        append_ns = await self._batcher.submit(result)
        t1 = time.perf_counter_ns()
        content = encode(result)
        self.metrics.inferred(pipeline, result, (size, len(content)), decode_ns, time.perf_counter_ns() - t1,
                              append_ns)
        return content

    def _record(self, result: pa.Table) -> int:
        """Append the result to the log store; the nanoseconds the durable append took."""
        t0 = time.perf_counter_ns()
        self._require_store().append(result)
        if self.uploader is not None:
            self.uploader.notify()
        return time.perf_counter_ns() - t0

    def status(self) -> dict[str, Any]:
        """GET /status: the log store's counters and bound, with EDGE_BUNDLE the uploader's (docs/ops.md), what serves
        and the in-line updater's state (docs/engine-api.md)."""
        serving, store = self.serving, self._require_store()
        return {"logs": {**asdict(store.stats()), "capacity_bytes": store.capacity_bytes},
                "upload": self.uploader.status() if self.uploader is not None else None,
                "serving": {**serving.describe(), "since": serving.since} if serving is not None else None,
                "update": self.updater.status() if self.updater is not None else None}

    def logs(self, limit: int, before: int | None, max_bytes: int, answer: str) -> tuple[bytes | memoryview, Window]:
        """POST /logs: the `limit` newest stored records below `before`, at most `max_bytes` of them, encoded."""
        window = self._require_store().newest(limit, before=before, max_bytes=max_bytes)
        return encode(window.table, answer), window

    def _require_store(self) -> LogStore:
        if self.store is None:
            raise NotReady("the inference log store is not open")
        return self.store
