"""Ops' Prometheus metrics: what GET /metrics answers (docs/ops.md, "Metrics").

The fleet's state is read from the database when Prometheus scrapes, a snapshot reused for CACHE_S seconds so
that several Prometheus servers (or a fast scrape interval) cost one set of queries; the only thing counted in
the process is what the database never sees, the log pages Ops refused. Assays report their scores and
alerts through `register_assay_metrics`.

With JOEY_OPS_METRICS_TOKEN set, /metrics wants `Authorization: Bearer` that token (it names every edge);
unset, it is open, as an in-cluster scrape expects.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from joey import __version__
from joey.errors import Unauthorized
from opscenter.db import Database
from opscenter.service import EDGE_PATH

# A `_created` series per counter doubles what each scrape carries and no query here uses it.
disable_created_metrics()

METRICS_TOKEN = "JOEY_OPS_METRICS_TOKEN"
CACHE_S = 5.0
# invited: its join token is not used yet; enrolled: joined, no check-in yet; serving: has checked in.
EDGE_STATES = ("invited", "enrolled", "serving")
_LOG_UPLOAD = f"{EDGE_PATH}/logs"


@dataclass(frozen=True)
class AssayReading:
    """An assay's latest window for one partition (edge location), as the assays report it."""

    assay: str
    pipeline: str
    partition: str   # the edge's name, or "" for an assay over every edge
    score: float
    alert: bool


@dataclass
class _Snapshot:
    taken_at: float = float("-inf")   # time.monotonic() of the queries
    edges: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    publishes: list[dict[str, Any]] = field(default_factory=list)
    assays: list[AssayReading] = field(default_factory=list)


class OpsMetrics(Collector):
    """Ops' registry and its collector over the database; `rejected` counts refused log pages by status."""

    def __init__(self, db: Database, clock: Callable[[], float], token: str | None = None):
        self.db, self.clock = db, clock
        self._token = hashlib.sha256(token.encode()).digest() if token else None
        self._assays: list[Callable[[], Iterable[AssayReading]]] = []
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()
        self.registry = CollectorRegistry()
        self.rejected = Counter("joey_ops_log_pages_rejected", "Log pages refused with a 4xx answer, by status.",
                                ("status",), registry=self.registry)
        self.registry.register(self)

    def add_assays(self, read: Callable[[], Iterable[AssayReading]]) -> None:
        self._assays.append(read)

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics: checks the bearer token when one is set, then the format Prometheus asked for."""
        if self._token is not None:
            scheme, _, presented = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    hashlib.sha256(presented.strip().encode()).digest(), self._token):
                raise Unauthorized("missing or wrong metrics bearer token",
                                   hint=f"send Authorization: Bearer ${METRICS_TOKEN} (the token joey-ops runs with)")
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(await run_in_threadpool(encoder, self.registry), media_type=content_type)

    # -------------------------------------------------------------------------------------------- reading
    def _read(self) -> _Snapshot:
        with self._lock:
            if time.monotonic() - self._snapshot.taken_at >= CACHE_S:
                with self.db.transaction() as tx:
                    edges = tx.all("SELECT e.name, p.pipeline_name, e.join_token_used_at, s.checked_in_at,"
                                   " s.last_update FROM edges e JOIN publishes p ON p.id = e.publish_id"
                                   " LEFT JOIN edge_states s ON s.edge_id = e.id")
                    records = tx.all("SELECT pipeline_name, COUNT(*) AS n FROM logs GROUP BY pipeline_name")
                    publishes = tx.all("SELECT pipeline_name, status, COUNT(*) AS n FROM publishes"
                                       " GROUP BY pipeline_name, status")
                assays = [reading for read in self._assays for reading in read()]
                self._snapshot = _Snapshot(time.monotonic(), edges, records, publishes, assays)
            return self._snapshot

    def collect(self) -> Iterator[Metric]:
        snap, now = self._read(), self.clock()
        info = InfoMetricFamily("joey_ops_build", "The Ops center's version.")
        info.add_metric([], {"version": __version__})
        yield info

        states = GaugeMetricFamily("joey_ops_edges", "Edges by pipeline and state: invited (join token unused), "
                                                     "enrolled (no check-in yet), serving.", labels=("pipeline", "state"))
        counts = {(e["pipeline_name"], s): 0 for e in snap.edges for s in EDGE_STATES}
        age = GaugeMetricFamily("joey_ops_edge_checkin_age_seconds", "Seconds since the edge last checked in.",
                                labels=("edge", "pipeline"))
        failed = GaugeMetricFamily("joey_ops_edge_update_failed", "1 when the edge's latest in-line update "
                                                                  "failed, else 0.", labels=("edge", "pipeline"))
        for e in snap.edges:
            labels = (e["name"], e["pipeline_name"])
            if e["checked_in_at"] is not None:
                age.add_metric(labels, max(0.0, now - e["checked_in_at"]))
            counts[e["pipeline_name"], _state(e)] += 1
            failed.add_metric(labels, float(_update_failed(e)))
        for labels, n in sorted(counts.items()):
            states.add_metric(labels, n)
        yield from (states, age, failed)

        records = CounterMetricFamily("joey_ops_log_records_ingested", "Inference log records stored, by pipeline.",
                                      labels=("pipeline",))
        for r in snap.records:
            records.add_metric((r["pipeline_name"],), r["n"])
        publishes = GaugeMetricFamily("joey_ops_publishes", "Publishes by pipeline and status.",
                                      labels=("pipeline", "status"))
        for p in snap.publishes:
            publishes.add_metric((p["pipeline_name"], p["status"]), p["n"])
        yield from (records, publishes)

        score = GaugeMetricFamily("joey_assay_score", "An assay's score of its latest window (PSI by default).",
                                  labels=("assay", "pipeline", "partition"))
        alert = GaugeMetricFamily("joey_assay_alert", "1 when an assay's latest window is over its threshold.",
                                  labels=("assay", "pipeline", "partition"))
        for a in snap.assays:
            score.add_metric((a.assay, a.pipeline, a.partition), a.score)
            alert.add_metric((a.assay, a.pipeline, a.partition), float(a.alert))
        yield from (score, alert)


def _state(edge: dict[str, Any]) -> str:
    if edge["join_token_used_at"] is None:
        return "invited"
    return "enrolled" if edge["checked_in_at"] is None else "serving"


def _update_failed(edge: dict[str, Any]) -> bool:
    return edge["last_update"] is not None and json.loads(edge["last_update"]).get("status") == "failed"


class _PageRejections:
    """ASGI middleware counting refused log uploads (POST /edge/logs answered 4xx) by status code: the database
    never holds a page it refused."""

    def __init__(self, app: ASGIApp, counter: Counter):
        self.app, self.counter = app, counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != _LOG_UPLOAD:
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                self.counter.labels(str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, sending)


def install(app: Starlette, db: Database, clock: Callable[[], float]) -> None:
    """GET /metrics on `app` (token: $JOEY_OPS_METRICS_TOKEN, if set), reading `db`; `clock` gives UNIX seconds."""
    metrics = OpsMetrics(db, clock, os.environ.get(METRICS_TOKEN) or None)
    app.state.metrics = metrics
    app.add_middleware(_PageRejections, counter=metrics.rejected)
    app.router.routes.append(Route("/metrics", metrics.endpoint, methods=["GET"]))


def register_assay_metrics(app: Starlette, read: Callable[[], Iterable[AssayReading]]) -> None:
    """The hook for assays: `read()` is called at scrape time (at most every CACHE_S seconds, on a worker thread)
    and answers the latest reading of every assay and partition, exported as `joey_assay_score` and
    `joey_assay_alert`. Call it after create_app (or from it), before the app serves."""
    app.state.metrics.add_assays(read)
