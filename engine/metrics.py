"""The engine's Prometheus metrics: what GET /metrics answers (docs/engine-api.md, "Metrics").

Two kinds. What the request path measures (request counts and latencies, per-stage and per-model-step
latencies, rows, body bytes) goes into plain counts under one lock, one acquisition per request and per
inference: prometheus-client's instruments take a lock per observation, several microseconds a request on a
small edge CPU. And a collector that reads the engine's own state when Prometheus scrapes: the log store's
counters, the uploader's and the updater's status, what serves. Nothing on the request path counts what that
state already knows.
"""
from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from joey import __version__
from joey.errors import JoeyError

if TYPE_CHECKING:   # engine.service builds EngineMetrics: importing it here would be a cycle
    from engine.logstore import LogStore, StoreStats
    from engine.runtime import Pipeline
    from engine.service import Engine

# A `_created` series per counter doubles what each scrape carries and no query here uses it.
disable_created_metrics()

# Requests to a path no route has (404s of scanners, typos) share one label value: cardinality stays bounded.
OTHER_ROUTE = "other"
# From 0.5 ms (a one-row request on a small model) to 10 s (a large batch on a slow edge CPU).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LE = [*(floatToGoString(b) for b in LATENCY_BUCKETS), "+Inf"]


class _Histogram:
    """One histogram family with one label, its series as plain counts; the caller holds the lock."""

    def __init__(self, name: str, text: str, label: str):
        self.name, self.text, self.label = name, text, label
        self.series: dict[str, list[float]] = {}   # label value -> count per bucket (+Inf last), then the sum

    def observe(self, key: str, seconds: float) -> None:
        counts = self.series.get(key)
        if counts is None:
            counts = self.series[key] = [0] * (len(_LE) + 1)
        counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1   # the first bucket whose bound is >= seconds
        counts[-1] += seconds

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.text, labels=(self.label,))
        for key, counts in sorted(self.series.items()):
            family.add_metric((key,), list(zip(_LE, accumulate(counts[:-1]), strict=True)), counts[-1])
        return family


class EngineMetrics(Collector):
    """The engine's registry: what the request path measured, and a collector over `engine`'s state."""

    def __init__(self, engine: Engine):
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}   # (route, status) -> answers
        self._latency = _Histogram("joey_engine_http_request_duration_seconds",
                                   "Time from a request's headers to its answer, by route.", "route")
        self._stage = _Histogram("joey_engine_infer_stage_duration_seconds",
                                 "Time of one stage of an inference: decode, encode, log_append (the durable "
                                 "append).", "stage")
        self._step = _Histogram("joey_engine_model_step_duration_seconds",
                                "Time onnxruntime took for one pipeline step of an inference, by step name.", "step")
        self._totals = dict.fromkeys(COUNTERS, 0)
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self.registry.register(_StateCollector(engine))

    # ---------------------------------------------------------------------------------- the request path
    def request(self, route: str, status: int, seconds: float) -> None:
        key = (route, str(status))
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            self._latency.observe(route, seconds)

    def inferred(self, pipeline: Pipeline, result: pa.Table, sizes: tuple[int, int],
                 decode_ns: int, encode_ns: int, append_ns: int) -> None:
        """One inference done: its stages' times, its model steps' (from the record's metadata.elapsed, which
        the pipeline measured), its rows and its bytes in and out."""
        steps = pipeline.steps
        # elapsed: [decode and binding, step 1, step 2, ...] in ns, the same list on every row
        elapsed = (result.column("metadata.elapsed").chunk(0).values.slice(1, len(steps)).to_pylist()
                   if result.num_rows else [])
        with self._lock:
            self._stage.observe("decode", decode_ns / 1e9)
            self._stage.observe("encode", encode_ns / 1e9)
            self._stage.observe("log_append", append_ns / 1e9)
            for step, ns in zip(steps, elapsed, strict=False):   # no rows: no elapsed
                self._step.observe(step.name, ns / 1e9)
            totals = self._totals
            totals["joey_engine_inference_rows"] += result.num_rows
            totals["joey_engine_infer_request_bytes"] += sizes[0]
            totals["joey_engine_infer_response_bytes"] += sizes[1]

    # ------------------------------------------------------------------------------------------ scraping
    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("joey_engine_http_requests", "HTTP requests answered, by route and status "
                                                                  "code.", labels=("route", "status"))
        with self._lock:   # a scrape builds a few dozen samples: requests wait that long, once a scrape
            for labels, n in sorted(self._requests.items()):
                family.add_metric(labels, n)
            families = [family, *(h.family() for h in (self._latency, self._stage, self._step)),
                        *(CounterMetricFamily(name, text, value=self._totals[name]) for name, text in COUNTERS.items())]
        return iter(families)

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics: the text format Prometheus asked for (OpenMetrics or the classic one)."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(await run_in_threadpool(encoder, self.registry), media_type=content_type)


COUNTERS = {   # the request path's plain totals; counter names go without _total, which the exposition adds
    "joey_engine_inference_rows": "Rows inferred (and logged).",
    "joey_engine_infer_request_bytes": "Bytes of inference request bodies.",
    "joey_engine_infer_response_bytes": "Bytes of inference answers.",
}


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
        store = engine.store
        stats = store.stats() if store else None
        upload = engine.uploader.status() if engine.uploader else None
        update = engine.updater.status() if engine.updater else None
        yield from [info, *_families(STORE, None if store is None or stats is None else {
            "joey_engine_log_store_bytes": stats.bytes_stored,
            "joey_engine_log_store_capacity_bytes": store.capacity_bytes,
            "joey_engine_log_store_records": stats.records_stored,
            "joey_engine_log_records_dropped": stats.records_dropped,
            "joey_engine_log_records_lost": stats.records_lost,
            "joey_engine_log_oldest_unsent_age_seconds": self._oldest_age(store, stats),
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

    def _oldest_age(self, store: LogStore, stats: StoreStats) -> float:
        """Seconds since the oldest record not yet acknowledged by Ops was inferred; 0 with none waiting. The
        record is read from disk only when the oldest one changed since the last scrape."""
        if stats.records_stored == 0:
            return 0.0
        position = (stats.cursor, stats.records_dropped, stats.records_lost)
        known, oldest_ms = self._oldest
        if known != position:
            try:
                page = store.next_page(1)
            except JoeyError:   # unreadable now: the next scrape tries again
                return 0.0
            times = page.table.column("time") if page and "time" in page.table.column_names else None
            oldest_ms = times[0].as_py() if times is not None and len(times) else None
            self._oldest = (position, oldest_ms)
        return 0.0 if oldest_ms is None else max(0.0, time.time() - oldest_ms / 1000)


# The state's families by name: (kind, help). Counter names go without _total, which the exposition adds.
STORE = {
    "joey_engine_log_store_bytes": ("gauge", "Bytes of inference log segment files on disk."),
    "joey_engine_log_store_capacity_bytes": ("gauge", "Bytes the inference log may hold before the oldest records "
                                                      "are dropped (LOCAL_INFERENCE_STORAGE)."),
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
