"""The edge's side of log collection: enroll with Ops, then send the local inference log to it, page by page.

One background thread. It enrolls first (engine.edge_client: the credential kept under PERSIST_DIR if there is
one, else the bundle's join token, once), then loops: take the oldest unacknowledged page of the LogStore, send
it, and acknowledge it locally only after Ops has answered. Nothing here ever delays or fails an inference:
while Ops is away the records wait in the store, within LOCAL_INFERENCE_STORAGE.

- OpsRetryable (Ops unreachable, timeout, 429, 5xx): the same page again after a capped exponential backoff
  with jitter, never sooner than Ops' Retry-After. Ops stores each (edge, seq) once, so a resent page
  never duplicates a record.
- OpsRejected (any other refusal: revoked credential, malformed or oversized page): resending cannot help. The
  page is written to PERSIST_DIR/rejected/FIRST-LAST.arrow (atomically) and only then acknowledged: it is
  neither retried forever nor lost silently, and /status counts it. The directory is kept within its own
  bound (the oldest files go first, counted) so a long refusal cannot fill the volume and stop inference.

docs/ops.md ("Delivery guarantee") states the guarantees; GET /status shows this thread's state.
"""
from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

from joey.opswire import MAX_PAGE_RECORDS
from joey.errors import JoeyError
from joey.fsutil import write_atomic

from engine.codecs import PANDAS_RECORDS, encode
from engine.edge_client import EdgeClient, OpsRejected, OpsRetryable
from engine.logstore import LogStore, Page
from engine.settings import Settings

log = logging.getLogger("engine")

# Records per upload when PLATEAU_PAGE_SIZE is unset: a few hundred KiB of JSON for the seeds' 29-feature
# records, one database transaction on Ops.
DEFAULT_PAGE_SIZE = 1000
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
# A refused enrollment (token already used, no credential on the volume) cannot succeed by retrying soon.
REFUSED_RETRY_S = 3600.0
# httpx's limit on each phase of a call to Ops (connect, send, await the answer); shutdown waits for the call
# in flight, so this also bounds how long a stop can take.
OPS_TIMEOUT_S = 10.0
REJECTED_DIR = "rejected"
_REJECTED_NAME = re.compile(r"(\d{20})-(\d{20})\.arrow")

# What /status says the thread is doing.
ENROLLING, REFUSED, IDLE, UPLOADING, RETRYING, STOPPED = (
    "enrolling", "refused", "idle", "uploading", "retrying", "stopped")
_KEEP = object()


class Uploader:
    """Sends the store's records to Ops. start() once; notify() after every append; stop() on shutdown."""

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
        self._retry_first, self._retry_max = retry_first, retry_max
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()   # the counters below, read by /status
        self._state = ENROLLING
        self._enrolled = False
        self._last_error: str | None = None
        self._last_upload_at: float | None = None
        self._counts = dict.fromkeys(("records_uploaded", "pages_uploaded", "records_rejected", "pages_rejected",
                                      "records_set_aside_deleted", "retries"), 0)
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------- control
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="log-uploader", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New records are durable in the store: send them now rather than at the next retry."""
        self._wake.set()

    def stop(self) -> None:
        """Let the call to Ops in flight finish (and its page be acknowledged), then end the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(OPS_TIMEOUT_S + 5)
            if self._thread.is_alive():   # its page stays unacknowledged and is resent after the restart
                log.warning("Edge %s: the log upload in flight did not finish; it is resent on the next start",
                            self.edge)
                return
        self.client.close()

    def status(self) -> dict[str, Any]:
        files = self._set_aside_files()
        with self._lock:
            return {
                "edge": self.edge,
                "state": self._state,
                "enrolled": self._enrolled,
                "page_size": self.page_size,
                **self._counts,
                "last_upload_at": self._last_upload_at,
                "last_error": self._last_error,
                "set_aside": {"directory": str(self.rejected_dir), "files": len(files),
                              "records": sum(n for _, n, _ in files), "bytes": sum(b for _, _, b in files)},
            }

    # ------------------------------------------------------------------------------------------- the thread
    def _run(self) -> None:
        try:
            if self._enroll():
                self._upload()
        except Exception as e:  # noqa: BLE001 - a dead uploader must say so; inference goes on regardless
            log.error("Edge %s: log upload stopped: %s: %s", self.edge, type(e).__name__, e, exc_info=e)
            self._set(STOPPED, f"{type(e).__name__}: {e}")
            return
        self._set(STOPPED)

    def _enroll(self) -> bool:
        failures, refusal = 0, None
        while not self._stop.is_set():
            try:
                self.client.ensure_enrolled()
            except OpsRetryable as e:
                delay = self._backoff(failures, e.retry_after)
                failures += 1
                log.warning("Edge %s: %s; serving on, inference logs stay on the edge; retrying in %.1fs",
                            self.edge, e, delay)
                self._set(ENROLLING, e.one_line())
            except OpsRejected as e:
                delay = REFUSED_RETRY_S
                if e.one_line() != refusal:   # once, not every hour
                    refusal = e.one_line()
                    log.error("Edge %s: %s; serving on, inference logs stay on the edge (enrollment refused)",
                              self.edge, refusal)
                self._set(REFUSED, refusal)
            except OSError as e:   # the credential could not be written to the volume
                delay = self._backoff(failures)
                failures += 1
                log.error("Edge %s: cannot keep the edge credential: %s; retrying in %.1fs", self.edge, e, delay)
                self._set(ENROLLING, str(e))
            else:
                with self._lock:
                    self._enrolled = True
                self._set(IDLE, None)
                return True
            self._stop.wait(delay)
        return False

    def _upload(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()   # before reading: an append after this read sets it again
            try:
                page = self.store.next_page(self.page_size)
            except JoeyError as e:
                delay = self._backoff(failures)
                failures += 1
                log.error("Edge %s: cannot read the inference log: %s; retrying in %.1fs", self.edge,
                          e.one_line(), delay)
                self._set(RETRYING, e.one_line())
                self._stop.wait(delay)
                continue
            if page is None:
                self._set(IDLE)
                self._wake.wait()
                continue
            self._set(UPLOADING)
            records = orjson.loads(encode(page.table, PANDAS_RECORDS))
            failures = self._deliver(page, records, failures)

    def _deliver(self, page: Page, records: list[dict], failures: int) -> int:
        """Try a page until it is done with (delivered, or set aside) or the engine stops; the count of
        consecutive failures after it."""
        while not self._stop.is_set():
            done, delay = self._attempt(page, records, failures)
            failures = 0 if done and not delay else failures + 1
            if delay:
                self._stop.wait(delay)
            if done:
                break
        return failures

    def _attempt(self, page: Page, records: list[dict], failures: int) -> tuple[bool, float]:
        """One try at a page: whether it is done with, and how long to pause before the next request."""
        last = page.seq_end - 1
        try:
            self.client.upload_page(page.seq_start, last, records)
            self.store.ack(page.seq_end)
        except OpsRetryable as e:
            delay = self._backoff(failures, e.retry_after)
            log.warning("Edge %s: log records %d..%d: %s; retrying in %.1fs", self.edge, page.seq_start, last,
                        e, delay)
            self._count(retries=1)
            self._set(RETRYING, e.one_line())
            return False, delay
        except OpsRejected as e:
            return self._reject(page, e, failures)
        except JoeyError as e:   # the credential file became unreadable, or the cursor cannot be written
            delay = self._backoff(failures)
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

    def _reject(self, page: Page, e: OpsRejected, failures: int) -> tuple[bool, float]:
        """Set the page aside, then acknowledge it. The pause after it keeps a refusal that concerns every page
        (a revoked credential) from turning each new record into a request to Ops."""
        last = page.seq_end - 1
        delay = self._backoff(failures)
        try:
            path = self._set_aside(page, e)
            self.store.ack(page.seq_end)
        except (OSError, JoeyError) as err:
            log.error("Edge %s: log records %d..%d: %s; cannot set them aside: %s; trying again in %.1fs",
                      self.edge, page.seq_start, last, e.one_line(), err, delay)
            self._set(RETRYING, f"{e.one_line()}; cannot set aside: {err}")
            return False, delay
        self._count(records_rejected=page.seq_end - page.seq_start, pages_rejected=1)
        log.error("Edge %s: log records %d..%d: %s; set aside in %s", self.edge, page.seq_start, last,
                  e.one_line(), path)
        self._set(REFUSED, e.one_line())
        return True, delay

    # ------------------------------------------------------------------------------------------- set aside
    def _set_aside(self, page: Page, e: OpsRejected) -> Path:
        last = page.seq_end - 1
        why = {"edge": self.edge, "seq_start": page.seq_start, "seq_end": last, "reason": e.one_line(),
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
    def _backoff(self, failures: int, retry_after: float | None = None) -> float:
        """Between half and all of a doubling, capped ceiling (jitter spreads edges that lost Ops together);
        never below Ops' Retry-After."""
        ceiling = min(self._retry_max, self._retry_first * 2 ** min(failures, 32))
        return max(random.uniform(ceiling / 2, ceiling), retry_after or 0.0)

    def _set(self, state: str, error: str | None | object = _KEEP) -> None:
        with self._lock:
            self._state = state
            if error is not _KEEP:
                self._last_error = error

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for key, n in deltas.items():
                self._counts[key] += n


def for_edge(settings: Settings, store: LogStore) -> Uploader | None:
    """The uploader of an engine started with EDGE_BUNDLE; None without one (the logs stay local: POST /logs)."""
    bundle = settings.edge_bundle
    if bundle is None:
        return None
    client = EdgeClient(bundle, settings.persist_dir, timeout=OPS_TIMEOUT_S)
    uploader = Uploader(store, client, page_size=settings.page_size,
                        rejected_dir=settings.persist_dir / REJECTED_DIR,
                        rejected_capacity=settings.log_capacity // 4)
    log.info("Edge %s: inference logs go to %s, %d records per upload", bundle.edge_name, bundle.opscenter_url,
             uploader.page_size)
    return uploader
