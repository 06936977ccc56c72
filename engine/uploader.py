"""The edge's side of log collection: enroll with Ops, then send the local inference log to it, page by page.

One background loop (engine.worker). It enrolls first (engine.edge_client: the credential kept under
PERSIST_DIR if there is one, else the bundle's join token, once), then: take the oldest unacknowledged page of
the LogStore, send it, and acknowledge it locally only after Ops has answered. Nothing here ever delays or
fails an inference: while Ops is away the records wait in the store, within LOCAL_INFERENCE_STORAGE.

A page is sent as an Arrow IPC stream of the store's own table (no record is turned into JSON on the edge; Ops
does that column by column). It holds at most PLATEAU_PAGE_SIZE records and at most joey.opswire.MAX_PAGE_BYTES
of Arrow, the most Ops takes in one upload: a store page that would be larger is sent as a prefix that fits
(halved until it does). A single record larger than any page can be is set aside (below) and counted as
`records_too_large`; the records after it go on as usual.

- OpsRetryable (Ops unreachable, timeout, 429, 5xx): the same page again after a capped exponential backoff
  with jitter, never sooner than Ops' Retry-After. Ops stores each (edge, seq) once, so a resent page
  never duplicates a record.
- OpsRejected (any other refusal: revoked credential, malformed or oversized page): resending cannot help. The
  page is written to PERSIST_DIR/rejected/FIRST-LAST.arrow (atomically) and only then acknowledged: it is
  neither retried forever nor lost silently, and /status counts it. The directory is kept within its own
  bound (the oldest files go first, counted) so a long refusal cannot fill the volume and stop inference.

docs/ops.md ("Delivery guarantee") states the guarantees; GET /status shows this loop's state.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from engine.edge_client import DEFAULT_TIMEOUT_S, EdgeClient, OpsRejected, OpsRetryable, arrow_page_body
from engine.logstore import LogStore, Page
from engine.settings import Settings
from engine.worker import IDLE, Backoff, Worker
from joey.errors import JoeyError
from joey.fsutil import write_atomic
from joey.opswire import MAX_PAGE_BYTES, MAX_PAGE_RECORDS

log = logging.getLogger("engine")

# Records per upload when PLATEAU_PAGE_SIZE is unset: a few hundred KiB of JSON for the seeds' 29-feature
# records, one database transaction on Ops.
DEFAULT_PAGE_SIZE = 1000
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
# A refused enrollment (token already used, no credential on the volume) cannot succeed by retrying soon.
REFUSED_RETRY_S = 3600.0
REJECTED_DIR = "rejected"
_REJECTED_NAME = re.compile(r"(\d{20})-(\d{20})\.arrow")

# What /status says the loop is doing.
ENROLLING, REFUSED, WAITING, UPLOADING, RETRYING, STOPPED = (
    "enrolling", "refused", "idle", "uploading", "retrying", "stopped")
_KEEP = object()


@dataclass(frozen=True)
class Batch:
    """What one upload sends: records page.seq_start..page.seq_end-1 as the Arrow body; `too_large`: a single
    record beyond MAX_PAGE_BYTES, which is set aside instead."""

    page: Page
    body: bytes
    too_large: bool = False


class Uploader:
    """Sends the store's records to Ops. start() once; notify() after every append; stop() on shutdown.
    The client is the engine's (shared with the updater): the uploader uses it and leaves closing it to its owner."""

    def __init__(self, store: LogStore, client: EdgeClient, *, page_size: int | None, rejected_dir: Path,
                 rejected_capacity: int, retry_first: float = RETRY_FIRST_S, retry_max: float = RETRY_MAX_S,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.client = client
        self.edge = client.bundle.edge_name
        requested = page_size or DEFAULT_PAGE_SIZE
        self.page_size = min(requested, MAX_PAGE_RECORDS)
        if requested > MAX_PAGE_RECORDS:
            log.warning("PLATEAU_PAGE_SIZE=%d is more than Ops takes in one upload; sending %d records at a time",
                        requested, MAX_PAGE_RECORDS)
        self.rejected_dir = rejected_dir
        self.rejected_capacity = rejected_capacity
        self._backoff = Backoff(retry_first, retry_max)
        self._clock = clock
        self._worker = Worker("log-uploader", self._step, on_exit=self._exited)
        self._failures = 0              # consecutive failures: the next pause grows with them
        self._batch: Batch | None = None  # the batch being delivered: resent as it is until done with
        self._refusal: str | None = None
        self._lock = threading.Lock()   # the counters below, read by /status
        self._state = ENROLLING
        self._last_error: str | None = None
        self._last_upload_at: float | None = None
        self._counts = dict.fromkeys(("records_uploaded", "pages_uploaded", "records_rejected", "pages_rejected",
                                      "records_too_large", "records_set_aside_deleted", "retries"), 0)

    # ------------------------------------------------------------------------------------------- control
    def start(self) -> None:
        self._worker.start()

    def notify(self) -> None:
        """New records are durable in the store: send them now rather than at the next retry."""
        self._worker.wake()

    def stop(self) -> None:
        """Let the call to Ops in flight finish (and its page be acknowledged), then end the loop."""
        if not self._worker.stop(DEFAULT_TIMEOUT_S + 5):   # its page is resent after the restart
            log.warning("Edge %s: the log upload in flight did not finish; it is resent on the next start",
                        self.edge)

    def status(self) -> dict[str, Any]:
        files = self._set_aside_files()
        with self._lock:
            return {
                "edge": self.edge,
                "state": self._state,
                "enrolled": self.client.credential is not None,
                "page_size": self.page_size,
                "page_bytes": MAX_PAGE_BYTES,
                **self._counts,
                "last_upload_at": self._last_upload_at,
                "last_error": self._last_error,
                "set_aside": {"directory": str(self.rejected_dir), "files": len(files),
                              "records": sum(n for _, n, _ in files), "bytes": sum(b for _, _, b in files)},
            }

    # ------------------------------------------------------------------------------------------- the loop
    def _exited(self, error: BaseException | None) -> None:
        if error is None:
            self._set(STOPPED)
            return
        log.error("Edge %s: log upload stopped: %s: %s", self.edge, type(error).__name__, error, exc_info=error)
        self._set(STOPPED, f"{type(error).__name__}: {error}")

    def _step(self) -> float | None:
        """Enroll, or take the next batch, or try the current one again; the pause before the next step."""
        if self.client.credential is None:
            return self._enroll()
        if self._batch is None:
            try:
                page = self.store.next_page(self.page_size)
            except JoeyError as e:
                delay = self._fail()
                log.error("Edge %s: cannot read the inference log: %s; retrying in %.1fs", self.edge,
                          e.one_line(), delay)
                self._set(RETRYING, e.one_line())
                return delay
            if page is None:
                self._set(WAITING)
                return IDLE
            self._set(UPLOADING)
            self._batch = self._fit(page)
        done, delay = self._attempt(self._batch)
        self._failures = 0 if done and not delay else self._failures + 1
        if done:
            self._batch = None
        return delay

    def _fail(self, retry_after: float | None = None) -> float:
        delay = self._backoff.delay(self._failures, retry_after)
        self._failures += 1
        return delay

    def _enroll(self) -> float:
        try:
            self.client.ensure_enrolled()
        except OpsRetryable as e:
            delay = self._fail(e.retry_after)
            log.warning("Edge %s: %s; serving on, inference logs stay on the edge; retrying in %.1fs",
                        self.edge, e, delay)
            self._set(ENROLLING, e.one_line())
            return delay
        except OpsRejected as e:
            if e.one_line() != self._refusal:   # once, not every hour
                self._refusal = e.one_line()
                log.error("Edge %s: %s; serving on, inference logs stay on the edge (enrollment refused)",
                          self.edge, self._refusal)
            self._set(REFUSED, self._refusal)
            return REFUSED_RETRY_S
        except OSError as e:   # the credential could not be written to the volume
            delay = self._fail()
            log.error("Edge %s: cannot keep the edge credential: %s; retrying in %.1fs", self.edge, e, delay)
            self._set(ENROLLING, str(e))
            return delay
        self._failures = 0
        self._set(WAITING, None)
        return 0.0

    # ------------------------------------------------------------------------------------------- paging
    def _fit(self, page: Page) -> Batch:
        """The page, or the longest halving of it whose upload body stays within MAX_PAGE_BYTES; a first record
        that alone is larger is a batch of its own, to be set aside."""
        while True:
            body = arrow_page_body(self.edge, page.seq_start, page.seq_end - 1, page.table)
            if len(body) <= MAX_PAGE_BYTES:
                return Batch(page, body)
            n = page.seq_end - page.seq_start
            if n == 1:
                return Batch(page, b"", too_large=True)
            page = _head(page, n // 2)

    def _attempt(self, batch: Batch) -> tuple[bool, float]:
        """One try at a batch: whether it is done with, and how long to pause before the next request."""
        page = batch.page
        last = page.seq_end - 1
        if batch.too_large:
            return self._too_large(page)
        try:
            self.client.upload_arrow(batch.body)
            self.store.ack(page.seq_end)
        except OpsRetryable as e:
            delay = self._backoff.delay(self._failures, e.retry_after)
            log.warning("Edge %s: log records %d..%d: %s; retrying in %.1fs", self.edge, page.seq_start, last,
                        e, delay)
            self._count(retries=1)
            self._set(RETRYING, e.one_line())
            return False, delay
        except OpsRejected as e:
            return self._reject(page, e)
        except JoeyError as e:   # the credential file became unreadable, or the cursor cannot be written
            delay = self._backoff.delay(self._failures)
            log.error("Edge %s: log records %d..%d: %s; retrying in %.1fs", self.edge, page.seq_start, last,
                      e.one_line(), delay)
            self._count(retries=1)
            self._set(RETRYING, e.one_line())
            return False, delay
        self._count(records_uploaded=page.seq_end - page.seq_start, pages_uploaded=1)
        with self._lock:
            self._last_upload_at = self._clock()
        self._set(UPLOADING, None)
        return True, 0.0

    def _reject(self, page: Page, e: OpsRejected) -> tuple[bool, float]:
        """Set the page aside, then acknowledge it. The pause after it keeps a refusal that concerns every page
        (a revoked credential) from turning each new record into a request to Ops."""
        delay = self._backoff.delay(self._failures)
        if not self._put_aside(page, e.one_line(), delay):
            return False, delay
        self._count(records_rejected=page.seq_end - page.seq_start, pages_rejected=1)
        self._set(REFUSED, e.one_line())
        return True, delay

    def _too_large(self, page: Page) -> tuple[bool, float]:
        """A record no upload can carry: set aside and counted, and the next records follow at once."""
        reason = f"record {page.seq_start} is more than {MAX_PAGE_BYTES} bytes as Arrow, the most one upload holds"
        if not self._put_aside(page, reason, delay := self._backoff.delay(self._failures)):
            return False, delay
        self._count(records_too_large=1)
        return True, 0.0

    def _put_aside(self, page: Page, reason: str, delay: float) -> bool:
        """Write the page to the set-aside directory and acknowledge it; False (logged) if that failed."""
        last = page.seq_end - 1
        try:
            path = self._set_aside(page, reason)
            self.store.ack(page.seq_end)
        except (OSError, JoeyError) as err:
            log.error("Edge %s: log records %d..%d: %s; cannot set them aside: %s; trying again in %.1fs",
                      self.edge, page.seq_start, last, reason, err, delay)
            self._set(RETRYING, f"{reason}; cannot set aside: {err}")
            return False
        log.error("Edge %s: log records %d..%d: %s; set aside in %s", self.edge, page.seq_start, last, reason, path)
        return True

    # ------------------------------------------------------------------------------------------- set aside
    def _set_aside(self, page: Page, reason: str) -> Path:
        last = page.seq_end - 1
        why = {"edge": self.edge, "seq_start": page.seq_start, "seq_end": last, "reason": reason,
               "rejected_at": self._clock()}
        table = page.table.replace_schema_metadata({"joey.rejected": json.dumps(why)})
        sink = pa.BufferOutputStream()
        with ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        data = sink.getvalue()
        self._make_room(data.size)
        path = self.rejected_dir / f"{page.seq_start:020d}-{last:020d}.arrow"
        write_atomic(path, memoryview(data))
        return path

    def _make_room(self, size: int) -> None:
        files = self._set_aside_files()
        total = sum(b for _, _, b in files)
        for path, records, nbytes in files:
            if total + size <= self.rejected_capacity:
                break
            path.unlink(missing_ok=True)
            total -= nbytes
            self._count(records_set_aside_deleted=records)
            log.warning("Edge %s: deleted %s (%d refused records) to keep %s within %d bytes", self.edge,
                        path.name, records, self.rejected_dir, self.rejected_capacity)

    def _set_aside_files(self) -> list[tuple[Path, int, int]]:
        """(path, records, bytes) of each set-aside page, oldest first."""
        try:
            names = sorted(p.name for p in self.rejected_dir.iterdir())
        except FileNotFoundError:
            return []
        files = []
        for name in names:
            if m := _REJECTED_NAME.fullmatch(name):
                path = self.rejected_dir / name
                try:
                    files.append((path, int(m[2]) - int(m[1]) + 1, path.stat().st_size))
                except FileNotFoundError:
                    continue
        return files

    # ------------------------------------------------------------------------------------------- helpers
    def _set(self, state: str, error: str | None | object = _KEEP) -> None:
        with self._lock:
            self._state = state
            if error is not _KEEP:
                self._last_error = error  # type: ignore[assignment]

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for key, n in deltas.items():
                self._counts[key] += n


def _head(page: Page, n: int) -> Page:
    """The first n records of `page`."""
    return page if n == page.seq_end - page.seq_start else Page(page.seq_start, page.seq_start + n,
                                                                page.table.slice(0, n))


def for_edge(settings: Settings, store: LogStore, client: EdgeClient) -> Uploader:
    """The uploader of an engine started with EDGE_BUNDLE, over the engine's client of Ops."""
    uploader = Uploader(store, client, page_size=settings.page_size,
                        rejected_dir=settings.persist_dir / REJECTED_DIR,
                        rejected_capacity=settings.log_capacity // 4)
    log.info("Edge %s: inference logs go to %s, %d records per upload", uploader.edge, client.base_url,
             uploader.page_size)
    return uploader
