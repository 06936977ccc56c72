"""The engine's Prometheus metrics: what GET /metrics answers (docs/engine-api.md, "Metrics").

Two kinds. Instruments the request path feeds (request counts and latencies, per-stage and per-model-step
latencies, rows, body bytes), each label child resolved once so a request pays a few lock-protected adds and no
lookups. And a collector that reads the engine's own state when Prometheus scrapes: the log store's counters,
the uploader's and the updater's status, what serves. Nothing on the request path counts what that state
already knows.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from joey import __version__
from joey.errors import JoeyError

if TYPE_CHECKING:   # engine.service builds EngineMetrics: importing it here would be a cycle
    from engine.runtime import Pipeline
    from engine.service import Engine

# A `_created` series per counter doubles what each scrape carries and no query here uses it.
disable_created_metrics()

# Requests to a path no route has (404s of scanners, typos) share one label value: cardinality stays bounded.
OTHER_ROUTE = "other"
# From 0.5 ms (a one-row request on a small model) to 10 s (a large batch on a slow edge CPU).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGES = ("decode", "encode", "log_append")


class EngineMetrics:
    """The engine's registry: the request-path instruments, and a collector over `engine`'s state."""

    def __init__(self, engine: Engine):
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter("joey_engine_http_requests", "HTTP requests answered, by route and status code.",
                                 ("route", "status"), registry=r)
        self._latency = Histogram("joey_engine_http_request_duration_seconds",
                                  "Time from a request's headers to its answer, by route.", ("route",),
                                  buckets=LATENCY_BUCKETS, registry=r)
        stage = Histogram("joey_engine_infer_stage_duration_seconds",
                          "Time of one stage of an inference: decode, encode, log_append (the durable append).",
                          ("stage",), buckets=LATENCY_BUCKETS, registry=r)
        self._decode, self._encode, self._append = (stage.labels(s) for s in STAGES)
        self._model = Histogram("joey_engine_model_step_duration_seconds",
                                "Time onnxruntime took for one pipeline step of an inference, by step name.",
                                ("step",), buckets=LATENCY_BUCKETS, registry=r)
        self._rows = Counter("joey_engine_inference_rows", "Rows inferred (and logged).", registry=r)
        self._bytes_in = Counter("joey_engine_infer_request_bytes", "Bytes of inference request bodies.",
                                 registry=r)
        self._bytes_out = Counter("joey_engine_infer_response_bytes", "Bytes of inference answers.", registry=r)
        self._children: dict[Any, Any] = {}   # (metric, labels) -> child: label lookups take a lock each
        self._state = _StateCollector(engine)
        r.register(self._state)

    # ---------------------------------------------------------------------------------- the request path
    def request(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        counter = self._children.get(key)
        if counter is None:
            counter = self._children[key] = self._requests.labels(route, str(status))
        counter.inc()
        latency = self._children.get(route)
        if latency is None:
            latency = self._children[route] = self._latency.labels(route)
        latency.observe(seconds)

    def inferred(self, pipeline: Pipeline, result: pa.Table, sizes: tuple[int, int],
                 decode_ns: int, encode_ns: int, append_ns: int) -> None:
        """One inference done: its stages' times, its model steps' (from the record's metadata.elapsed, which
        the pipeline measured), its rows and its bytes in and out."""
        self._decode.observe(decode_ns / 1e9)
        self._encode.observe(encode_ns / 1e9)
        self._append.observe(append_ns / 1e9)
        if result.num_rows:
            # elapsed: [decode and binding, step 1, step 2, ...] in ns, the same on every row
            elapsed = result.column("metadata.elapsed")[0].values.to_numpy()
            for step, ns in zip(pipeline.steps, elapsed[1:].tolist()):
                child = self._children.get(step.name)
                if child is None:
                    child = self._children[step.name] = self._model.labels(step.name)
                child.observe(ns / 1e9)
        self._rows.inc(result.num_rows)
        self._bytes_in.inc(sizes[0])
        self._bytes_out.inc(sizes[1])

    # ------------------------------------------------------------------------------------------ scraping
    async def endpoint(self, request: Request) -> Response:
        """GET /metrics: the text format Prometheus asked for (OpenMetrics or the classic one)."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(await run_in_threadpool(encoder, self.registry), media_type=content_type)


class RequestMetrics:
    """ASGI middleware counting every HTTP answer by route (the route's path template, so /pipelines/{name} is
    one series whatever the name) and status, with its latency. Errors are counted as the answer they became."""

    def __init__(self, app: ASGIApp, metrics: EngineMetrics, routes: Iterable[Any]):
        self.app, self.metrics = app, metrics
        self._paths = {route.endpoint: route.path for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500   # what the client gets if the app raises before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = self._paths.get(scope.get("endpoint"), OTHER_ROUTE)
            self.metrics.request(route, status, time.perf_counter() - started)


class _StateCollector(Collector):
    """The engine's state as metrics, read at scrape time."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._oldest: tuple[tuple[int, ...], float | None] = ((), None)   # (store position, oldest time)

    def collect(self) -> Iterator[Metric]:
        engine, serving = self.engine, self.engine.serving
        info = InfoMetricFamily("joey_engine_build", "What this engine runs: the pipeline served (empty until "
                                                     "one is loaded) and the engine's own version.")
        info.add_metric([], {"pipeline": serving.pipeline.config.name if serving else "",
                             "version": serving.pipeline.config.version if serving else "",
                             "engine_version": __version__})
        stats = engine.store.stats() if engine.store else None
        upload = engine.uploader.status() if engine.uploader else None
        update = engine.updater.status() if engine.updater else None
        yield from [info, *_families(STORE, stats and {
            "joey_engine_log_store_bytes": stats.bytes_stored,
            "joey_engine_log_store_records": stats.records_stored,
            "joey_engine_log_records_dropped": stats.records_dropped,
            "joey_engine_log_records_lost": stats.records_lost,
            "joey_engine_log_oldest_unsent_age_seconds": self._oldest_age(engine, stats),
        }), *_families(UPLOAD, upload and {
            "joey_engine_log_uploaded_records": upload["records_uploaded"],
            "joey_engine_log_uploaded_pages": upload["pages_uploaded"],
            "joey_engine_log_rejected_records": upload["records_rejected"],
            "joey_engine_log_upload_retries": upload["retries"],
            "joey_engine_log_last_upload_timestamp_seconds": upload["last_upload_at"],
        }), *_families(UPDATE, update and {
            "joey_engine_update_attempts": update["updates"] + update["failures"],
            "joey_engine_update_failures": update["failures"],
            "joey_engine_last_checkin_timestamp_seconds": update["last_checkin_at"],
        })]

    def _oldest_age(self, engine: Engine, stats) -> float:
        """Seconds since the oldest record not yet acknowledged by Ops was inferred; 0 with none waiting. The
        record is read from disk only when the oldest one changed since the last scrape."""
        if stats.records_stored == 0:
            return 0.0
        position = (stats.cursor, stats.records_dropped, stats.records_lost)
        known, oldest_ms = self._oldest
        if known != position:
            try:
                page = engine.store.next_page(1)
            except JoeyError:   # unreadable now: the next scrape tries again
                return 0.0
            times = page.table.column("time") if page and "time" in page.table.column_names else None
            oldest_ms = times[0].as_py() if times is not None and len(times) else None
            self._oldest = (position, oldest_ms)
        return 0.0 if oldest_ms is None else max(0.0, time.time() - oldest_ms / 1000)


# The state's families by name: (kind, help). Counter names go without _total, which the exposition adds.
STORE = {
    "joey_engine_log_store_bytes": ("gauge", "Bytes of inference log segment files on disk."),
    "joey_engine_log_store_records": ("gauge", "Records kept and not yet acknowledged by Ops: the upload backlog."),
    "joey_engine_log_records_dropped": ("counter", "Records removed unacknowledged to stay within capacity."),
    "joey_engine_log_records_lost": ("counter", "Records damaged, deleted or failed to write."),
    "joey_engine_log_oldest_unsent_age_seconds": ("gauge", "Age of the oldest record not yet acknowledged by Ops "
                                                           "(0: none waiting)."),
}
UPLOAD = {   # with EDGE_BUNDLE
    "joey_engine_log_uploaded_records": ("counter", "Records Ops acknowledged."),
    "joey_engine_log_uploaded_pages": ("counter", "Pages of records Ops acknowledged."),
    "joey_engine_log_rejected_records": ("counter", "Records Ops refused, set aside on disk."),
    "joey_engine_log_upload_retries": ("counter", "Uploads and enrollments tried again after a failure."),
    "joey_engine_log_last_upload_timestamp_seconds": ("gauge", "UNIX time of the last page Ops acknowledged."),
}
UPDATE = {   # once a pipeline serves
    "joey_engine_update_attempts": ("counter", "In-line updates tried (a replacement pulled and tested)."),
    "joey_engine_update_failures": ("counter", "In-line updates that failed; the previous pipeline served on."),
    "joey_engine_last_checkin_timestamp_seconds": ("gauge", "UNIX time of the last check-in Ops answered "
                                                            "(EDGE_BUNDLE)."),
}


def _families(group: dict[str, tuple[str, str]], values: dict[str, float | None] | None) -> list[Metric]:
    """A family per name of `group`, with its value from `values` if there is one: a part of the engine not
    running, or a timestamp of something that never happened, is no sample (rather than 0, or 1970)."""
    families: list[Metric] = []
    for name, (kind, text) in group.items():
        family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, text)
        value = values.get(name) if values else None
        if value is not None:
            family.add_metric([], value)
        families.append(family)
    return families
