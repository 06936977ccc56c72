"""Assays: drift checks over edge logs (docs/ops.md, "Assays"), kept in the database, run on demand (/run) and on
schedule (a background thread computing each active assay's windows as they complete), answered under
/v1/api/assays/*.

An assay fixes its baseline's bin edges and proportions when it is created; each window's values of the field
are binned the same way and scored against them (opscenter/drift.py), one series per named edge location, or one
over the whole pipeline. Every replica may run the schedule: results are keyed by (assay, series, window) and
written as upserts, so a window computed twice is stored once.
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from joey import opswire as models
from joey.errors import BadRequest, Conflict, JoeyError, Missing
from opscenter import drift, metrics
from opscenter.db import Database

log = logging.getLogger("joey.ops.assays")
API = "/v1/api/assays"
SCHEDULE_S = 60.0             # how often the schedule looks for completed windows
MAX_WINDOWS_PER_RUN = 1000    # windows one run computes: a bound on its time, whatever width and interval say
WINDOWS_PER_QUERY = 50        # windows whose records are read from the database at once: a bound on memory
ALL = ""                      # the partition key of the series over all edges


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


class Windows:
    """An assay's rolling windows: window k is [start + k*interval, start + k*interval + width), in ms."""

    def __init__(self, spec: dict):
        window = spec["window"]
        self.start = window["start"]
        self.width = window["width_seconds"] * 1000
        self.interval = (window["interval_seconds"] or window["width_seconds"]) * 1000

    def complete(self, now_ms: int) -> int:
        """How many windows have ended by now."""
        return 0 if now_ms < self.start + self.width else (now_ms - self.start - self.width) // self.interval + 1

    def first_from(self, t: int) -> int:
        """The first window starting at or after t."""
        return max(0, -((self.start - t) // self.interval))

    def bounds(self, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        starts = self.start + ks * self.interval
        return starts, starts + self.width


class AssayService:
    def __init__(self, db: Database, clock: Callable[[], float]):
        self.db, self.clock = db, clock
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the schedule ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="joey-ops-assays", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self.run_scheduled()
            self._wake.wait(SCHEDULE_S)
            self._wake.clear()

    def run_scheduled(self) -> None:
        """Each active assay's windows completed since its last stored one; a failure is kept as its
        `last_error` (and logged), and the other assays run on."""
        try:
            with self.db.transaction() as tx:
                rows = tx.all("SELECT * FROM assays WHERE active = 1 ORDER BY id")
        except JoeyError as e:   # the database away: look again at the next tick
            log.warning("looking for assays to run: %s", e.one_line())
            return
        for row in rows:
            if self._stopping.is_set():
                return
            try:
                with self.db.transaction() as tx:
                    last = tx.one("SELECT MAX(window_start) AS t FROM assay_results WHERE assay_id = ?",
                                  (row["id"],))["t"]
                windows = Windows(json.loads(row["spec"]))
                self._compute(row, windows.first_from(last + 1) if last is not None else 0, None)
            except Exception as e:   # one assay's failure, even a bug, must not end the schedule of all
                problem = e.one_line() if isinstance(e, JoeyError) else f"internal error: {type(e).__name__}: {e}"
                log.warning("assay %s: %s", row["name"], problem, exc_info=not isinstance(e, JoeyError))
                with contextlib.suppress(JoeyError), self.db.transaction() as tx:
                    tx.execute("UPDATE assays SET last_error = ? WHERE id = ?", (problem, row["id"]))

    # ---- the API ---------------------------------------------------------------------------------------

    def create(self, req: models.AssayCreate) -> dict:
        now = self.clock()
        spec = req.model_dump(mode="json")
        spec["window"]["start"] = req.window.start if req.window.start is not None else int(now * 1000)
        with self.db.transaction() as tx:
            if tx.one("SELECT id FROM publishes WHERE pipeline_name = ? LIMIT 1", (req.pipeline_name,)) is None:
                raise Missing(f"pipeline_name: no pipeline {req.pipeline_name!r} was published",
                              hint="list_pipelines shows the pipelines")
            if tx.one("SELECT id FROM assays WHERE name = ?", (req.name,)) is not None:
                raise Conflict(f"an assay named {req.name!r} already exists", hint="assay names are unique")
        field = drift.FieldPath(req.field)
        if isinstance(req.baseline, models.BaselineValues):
            values = np.asarray(req.baseline.values, np.float64)
            spec["baseline"] = {"values_count": len(req.baseline.values)}
        else:
            b = req.baseline
            if b.end <= b.start:
                raise BadRequest(f"baseline: end ({b.end}) must be after start ({b.start})")
            _, values = drift.read(self._records(req.pipeline_name, b.partition, b.start, b.end), field)
        edges = drift.edges(values, req.bins.mode, req.bins.count)
        baseline = {"edges": edges.tolist(), "proportions": drift.proportions(values, edges).tolist(),
                    "values": int(values.size)}
        with self.db.transaction() as tx:
            row = tx.one("INSERT INTO assays (name, pipeline_name, spec, baseline, active, created_at) VALUES"
                         " (?, ?, ?, ?, ?, ?) RETURNING *", (req.name, req.pipeline_name, json.dumps(spec),
                                                              json.dumps(baseline), int(req.active), now))
        self._wake.set()   # its windows that are complete already are computed at once
        return self._view(row)

    def list(self, pipeline_name: str | None) -> dict:
        with self.db.transaction() as tx:
            rows = (tx.all("SELECT * FROM assays WHERE pipeline_name = ? ORDER BY id", (pipeline_name,))
                    if pipeline_name else tx.all("SELECT * FROM assays ORDER BY id"))
        return {"assays": [self._view(r) for r in rows]}

    def get(self, assay_id: int) -> dict:
        return self._view(self._row(assay_id))

    def run(self, req: models.RunAssay) -> dict:
        """Compute (again) the complete windows starting in [start, end)."""
        row = self._row(req.id)
        windows = Windows(json.loads(row["spec"]))
        first = windows.first_from(req.start) if req.start is not None else 0
        return {"assay": self._view(row), "results": self._compute(row, first, req.end, strict=True)}

    def results(self, req: models.AssayResults) -> dict:
        row = self._row(req.id)
        sql, params = "SELECT * FROM assay_results WHERE assay_id = ?", [req.id]
        for clause, value in (("partition = ?", req.partition), ("window_start >= ?", req.start),
                              ("window_start < ?", req.end)):
            if value is not None:
                sql += f" AND {clause}"
                params.append(value)
        with self.db.transaction() as tx:
            rows = tx.all(sql + " ORDER BY window_start DESC, partition LIMIT ?", (*params, req.limit))
        baseline = json.loads(row["baseline"])
        return {"assay": self._view(row), "results": [self._result(r, baseline) for r in reversed(rows)]}

    # ---- computing -------------------------------------------------------------------------------------

    def _compute(self, row: dict, first: int, end: int | None, *, strict: bool = False) -> list[dict]:
        """Score windows first.. (those complete, starting before `end`), store and return them. More than
        MAX_WINDOWS_PER_RUN: refused on demand (strict), else the oldest that many now, the rest next time."""
        spec, baseline = json.loads(row["spec"]), json.loads(row["baseline"])
        windows, now = Windows(spec), self.clock()
        last = windows.complete(int(now * 1000))
        if end is not None:
            last = min(last, windows.first_from(end))
        if strict and last - first > MAX_WINDOWS_PER_RUN:
            raise BadRequest(f"{last - first} windows to compute; one run computes at most {MAX_WINDOWS_PER_RUN}",
                             hint="narrow the run with start and end (epoch ms)")
        ks = np.arange(first, min(last, first + MAX_WINDOWS_PER_RUN))
        field, edges = drift.FieldPath(spec["field"]), np.asarray(baseline["edges"])
        expected = np.asarray(baseline["proportions"])
        out = []
        for partition in spec["partitions"] or [None]:
            for group in np.array_split(ks, max(1, -(-ks.size // WINDOWS_PER_QUERY))) if ks.size else ():
                starts, ends = windows.bounds(group)
                times, values = drift.read(self._records(row["pipeline_name"], partition, int(starts[0]),
                                                         int(ends[-1])), field)
                order = np.argsort(times, kind="stable")
                times, values = times[order], values[order]
                lo, hi = np.searchsorted(times, starts), np.searchsorted(times, ends)
                for s, e, i, j in zip(starts.tolist(), ends.tolist(), lo.tolist(), hi.tolist(), strict=True):
                    got = drift.proportions(values[i:j], edges)
                    value = drift.score(spec["metric"], got, expected) if j > i else None
                    out.append({"partition": partition or ALL, "window_start": s, "window_end": e,
                                "records": j - i, "score": value,
                                "alert": int(value is not None and value > spec["alert_threshold"]),
                                "bins": json.dumps({"window": got.tolist()}), "computed_at": now})
        with self.db.transaction() as tx:
            tx.execute_many(
                "INSERT INTO assay_results (assay_id, partition, window_start, window_end, records, score, alert,"
                " bins, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (assay_id, partition,"
                " window_start) DO UPDATE SET window_end = excluded.window_end, records = excluded.records,"
                " score = excluded.score, alert = excluded.alert, bins = excluded.bins,"
                " computed_at = excluded.computed_at",
                [(row["id"], r["partition"], r["window_start"], r["window_end"], r["records"], r["score"],
                  r["alert"], r["bins"], r["computed_at"]) for r in out])
            tx.execute("UPDATE assays SET last_run_at = ?, last_error = NULL WHERE id = ?", (now, row["id"]))
        return [self._result(r, baseline) for r in out]

    def _records(self, pipeline: str, partition: str | None, start: int, end: int) -> list[str]:
        sql = "SELECT record FROM logs WHERE pipeline_name = ? AND time >= ? AND time < ?"
        params: list[Any] = [pipeline, start, end]
        if partition is not None:
            sql += " AND partition = ?"
            params.append(partition)
        with self.db.transaction() as tx:
            return [r["record"] for r in tx.all(sql, params)]

    def readings(self) -> list[metrics.AssayReading]:
        """Each assay's latest scored window per series, for Prometheus (opscenter/metrics.py)."""
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT a.name, a.pipeline_name, r.partition, r.score, r.alert FROM assay_results r"
                " JOIN assays a ON a.id = r.assay_id WHERE r.score IS NOT NULL AND r.window_start ="
                " (SELECT MAX(window_start) FROM assay_results l WHERE l.assay_id = r.assay_id"
                " AND l.partition = r.partition AND l.score IS NOT NULL) ORDER BY a.name, r.partition")
        return [metrics.AssayReading(r["name"], r["pipeline_name"], r["partition"], r["score"], bool(r["alert"]))
                for r in rows]

    # ---- views -----------------------------------------------------------------------------------------

    def _row(self, assay_id: int) -> dict:
        with self.db.transaction() as tx:
            row = tx.one("SELECT * FROM assays WHERE id = ?", (assay_id,))
        if row is None:
            raise Missing(f"no assay with id {assay_id}", hint="/v1/api/assays/list shows the assays")
        return row

    @staticmethod
    def _view(row: dict) -> dict:
        spec, baseline = json.loads(row["spec"]), json.loads(row["baseline"])
        return {"id": row["id"], **spec, "active": bool(row["active"]),
                "bins": {**spec["bins"], "edges": baseline["edges"], "baseline": baseline["proportions"],
                         "baseline_values": baseline["values"]},
                "created_at": _iso(row["created_at"]), "last_run_at": _iso(row["last_run_at"]),
                "last_error": row["last_error"]}

    @staticmethod
    def _result(r: dict, baseline: dict) -> dict:
        return {"partition": r["partition"] or None, "window_start": r["window_start"],
                "window_end": r["window_end"], "records": r["records"], "score": r["score"],
                "alert": bool(r["alert"]),
                "bins": {"edges": baseline["edges"], "baseline": baseline["proportions"],
                         "window": json.loads(r["bins"])["window"]},
                "computed_at": _iso(r["computed_at"])}


def _routes(service: AssayService, endpoint: Callable) -> Iterable[Route]:
    calls = {
        "create": (models.AssayCreate, lambda _, b: service.create(b)),
        "list": (models.ListAssays, lambda _, b: service.list(b.pipeline_name)),
        "get": (models.AssayId, lambda _, b: service.get(b.id)),
        "run": (models.RunAssay, lambda _, b: service.run(b)),
        "get_results": (models.AssayResults, lambda _, b: service.results(b)),
    }
    return [Route(f"{API}/{name}", endpoint(model, call), methods=["POST"]) for name, (model, call) in calls.items()]


def attach(app, db: Database, endpoint: Callable) -> AssayService:
    """Add the assay API to `app` (admin calls made by `endpoint`, as the pipelines API's) and run the schedule
    for as long as the app runs."""
    service = AssayService(db, lambda: app.state.clock())
    app.router.routes.extend(_routes(service, endpoint))
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a):
        async with inner(a) as state:
            # At start-up, not here: /metrics is installed after the routes (opscenter/app.py).
            if hasattr(app.state, "metrics"):
                metrics.register_assay_metrics(app, service.readings)
            service.start()
            try:
                yield state
            finally:
                await run_in_threadpool(service.stop)
    app.router.lifespan_context = lifespan
    return service
