"""The roll-up: Ops' background worker that moves logs out of the database into Parquet in the object store,
and the reader that serves get_logs from those files.

The database keeps a hot window: per pipeline and partition (edge), the records received in the last
`hot_hours` and at most the newest `hot_records`. Older records go in batches, one batch being one partition's
records of one UTC day (by received_at), ids in a range, at most MAX_BATCH of them:

1. claim: a `log_objects` row names the batch (pipeline, partition, day, id range) and its object key, with
   claimed_by/claimed_at as a lease. On PostgreSQL claims are made under a transaction-scoped advisory lock, so
   two replicas never name overlapping batches; SQLite's one writer at a time gives the same (one process).
2. write: the batch's rows become one Arrow table (no per-row Python) and one Parquet object, which is read
   back and compared with what was meant to be written.
3. commit: in one transaction the row is marked done and the batch's rows deleted, only while the claim is
   still the worker's. A worker that dies mid-batch leaves the claim to run out; any worker then takes the
   batch over and writes the same rows under the same key again.

`log_objects` rows that are done are the archive's catalog: get_logs reads the objects whose id range lies
past its cursor, so ids, and the cursor, mean the same across the database and the files.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from joey.errors import JoeyError, ObjectStoreUnavailable
from joey.opswire import GetLogs
from opscenter import logrecords
from opscenter.db import Database, Tx
from opscenter.objectstore import SCHEMA, ObjectStore, ObjectStoreSettings

log = logging.getLogger("joey.ops.rollup")

DAY_S = 86400
MAX_BATCH = 100_000
DEFAULT_HOT_HOURS = 24.0
DEFAULT_HOT_RECORDS = 1_000_000
DEFAULT_INTERVAL_S = 300.0
# A batch is at most MAX_BATCH records: written and read back well within this, or its worker is gone.
LEASE_S = 600.0
# pg_advisory_xact_lock's key for claims: "joeyroll" in ASCII (a positive bigint), which no other lock of Ops uses.
_CLAIM_LOCK = int.from_bytes(b"joeyroll", "big")
_BATCH_ROWS = ("pipeline_name = ? AND partition = ? AND id BETWEEN ? AND ? AND received_at >= ?"
               " AND received_at < ?")


@dataclass(frozen=True)
class RollupSettings:
    store: ObjectStoreSettings
    hot_hours: float = DEFAULT_HOT_HOURS
    hot_records: int = DEFAULT_HOT_RECORDS
    interval_s: float = DEFAULT_INTERVAL_S


def _batch_params(job: dict) -> tuple:
    return (job["pipeline_name"], job["partition"], job["min_id"], job["max_id"], job["day_start"],
            job["day_start"] + DAY_S)


class Rollup:
    def __init__(self, db: Database, settings: RollupSettings, clock: Callable[[], float]):
        self.db, self.settings, self.clock = db, settings, clock
        self.store = ObjectStore(settings.store)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="joey-ops-rollup", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.wait(self.settings.interval_s):
            try:
                self.run_once()
            except JoeyError as e:   # the database or the store away: the next round tries again
                log.warning("rolling logs up: %s", e.one_line())

    # ---- one round -------------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Roll every batch that is due; the number of records moved to the object store."""
        moved = 0
        for job in self._take_over():
            moved += self._carry_out(job)
        while not self._stopping.is_set() and (job := self._claim()) is not None:
            moved += self._carry_out(job)
        return moved

    def _take_over(self) -> list[dict]:
        """Batches claimed before and not done: released after a failure, or their worker's lease ran out."""
        now = self.clock()
        mine = []
        with self.db.transaction() as tx:
            for job in tx.all("SELECT * FROM log_objects WHERE done_at IS NULL AND (claimed_by IS NULL"
                              " OR claimed_at < ?) ORDER BY min_id", (now - LEASE_S,)):
                if tx.execute("UPDATE log_objects SET claimed_by = ?, claimed_at = ? WHERE key = ?"
                              " AND done_at IS NULL AND (claimed_by IS NULL OR claimed_at < ?)",
                              (self.worker_id, now, job["key"], now - LEASE_S)) == 1:
                    mine.append(job)
        return mine

    def _claim(self) -> dict | None:
        """Name the next batch that is due, in a partition with no batch under way; None when none is due."""
        now = self.clock()
        cutoff = now - self.settings.hot_hours * 3600
        with self.db.transaction() as tx:
            if tx.dialect == "postgresql":
                tx.one("SELECT pg_advisory_xact_lock(?)", (_CLAIM_LOCK,))
            groups = tx.all(
                "SELECT pipeline_name, partition, COUNT(*) AS n, MAX(CASE WHEN received_at < ? THEN id END) AS old"
                " FROM logs l WHERE NOT EXISTS (SELECT 1 FROM log_objects o WHERE o.done_at IS NULL"
                " AND o.pipeline_name = l.pipeline_name AND o.partition = l.partition)"
                " GROUP BY pipeline_name, partition ORDER BY pipeline_name, partition", (cutoff,))
            for g in groups:
                bound = self._bound(tx, g)
                if bound is not None:
                    return self._name_batch(tx, g["pipeline_name"], g["partition"], bound, now)
        return None

    def _bound(self, tx: Tx, group: dict) -> int | None:
        """The highest id of the group that leaves the hot window: received before the cutoff, or beyond the
        newest `hot_records`."""
        bound = group["old"]
        if group["n"] > self.settings.hot_records:
            row = tx.one("SELECT id FROM logs WHERE pipeline_name = ? AND partition = ? ORDER BY id DESC"
                         " LIMIT 1 OFFSET ?", (group["pipeline_name"], group["partition"], self.settings.hot_records))
            bound = row["id"] if bound is None else max(bound, row["id"])
        return bound

    def _name_batch(self, tx: Tx, pipeline: str, partition: str, bound: int, now: float) -> dict:
        first = tx.one("SELECT id, received_at FROM logs WHERE pipeline_name = ? AND partition = ? AND id <= ?"
                       " ORDER BY id LIMIT 1", (pipeline, partition, bound))
        day_start = float(int(first["received_at"] // DAY_S) * DAY_S)
        last = tx.one(f"SELECT MAX(id) AS max_id FROM (SELECT id FROM logs WHERE {_BATCH_ROWS} ORDER BY id"
                      " LIMIT ?) t", (pipeline, partition, first["id"], bound, day_start, day_start + DAY_S,
                                      MAX_BATCH))
        job = {"key": self.store.new_key(pipeline, partition, day_start), "pipeline_name": pipeline,
               "partition": partition, "day_start": day_start, "min_id": first["id"], "max_id": last["max_id"]}
        tx.execute("INSERT INTO log_objects (key, pipeline_name, partition, day_start, min_id, max_id, claimed_by,"
                   " claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (*job.values(), self.worker_id, now))
        return job

    def _carry_out(self, job: dict) -> int:
        """Write the batch's object, check it, then drop its rows from the database; 0 when it failed (the
        batch is released and tried again next round)."""
        try:
            with self.db.transaction() as tx:
                rows = tx.all(f"SELECT {', '.join(SCHEMA.names)} FROM logs WHERE {_BATCH_ROWS} ORDER BY id",
                              _batch_params(job))
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            self.store.write(job["key"], table)
            if not self.store.read(job["key"]).equals(table):
                raise ObjectStoreUnavailable("verify", self.store.url(job["key"]),
                                             "what was read back differs from what was written")
            with self.db.transaction() as tx:
                if tx.execute("UPDATE log_objects SET done_at = ?, records = ? WHERE key = ? AND claimed_by = ?"
                              " AND done_at IS NULL", (self.clock(), len(rows), job["key"], self.worker_id)) == 1:
                    tx.execute(f"DELETE FROM logs WHERE {_BATCH_ROWS}", _batch_params(job))
                    return len(rows)
            return 0
        except JoeyError as e:
            log.warning("rolling %s up: %s", self.store.url(job["key"]), e.one_line())
            with self.db.transaction() as tx:
                tx.execute("UPDATE log_objects SET claimed_by = NULL WHERE key = ? AND claimed_by = ?",
                           (job["key"], self.worker_id))
            return 0


    # ---- reading ---------------------------------------------------------------------------------------

    def merged(self, req: GetLogs, hot: list[dict]) -> list[dict]:
        """`hot` (the database's first limit+1 rows past the cursor, {id, record}) merged with the archive's:
        the first limit+1 of both by id. Called after reading `hot`: a batch rolled in between is then in both,
        and counted once."""
        where, params = logrecords.page_filter(req, "max_id")
        with self.db.transaction() as tx:
            objects = tx.all(f"SELECT key, min_id FROM log_objects WHERE done_at IS NOT NULL AND {where} "
                             "ORDER BY min_id", params)
        want = req.limit + 1
        found = {r["id"]: r["record"] for r in hot}
        for obj in objects:
            # Objects come by their lowest id: once `want` records are found below this one's, no later object
            # holds a record that belongs in the page.
            if len(found) >= want and sorted(found)[want - 1] < obj["min_id"]:
                break
            table = self.store.read(obj["key"], ["id", "record"], after_id=req.after)
            found.update(zip(table.column("id").to_pylist(), table.column("record").to_pylist(), strict=True))
        return [{"id": i, "record": found[i]} for i in sorted(found)[:want]]
