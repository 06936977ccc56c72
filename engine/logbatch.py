"""Group commit of the event loop's inference records: one thread, one append and one fsync per group.

Requests answered on the event loop (engine.service, small bodies) hand their result table here and await it
being durable. While one group is being written, the records that arrive queue up; the writer thread then
takes them all, appends each run of records sharing a schema as one table (the store keeps one sequence number
per row, so N one-row tables appended as one N-row table are the same N records) and wakes the loop once per
group. Against one executor submission per request this saves a thread wake-up, an IPC encoding and a crc32
per record, and groups are as large as the concurrency, not as the executor's thread count.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pyarrow as pa


class LogBatcher:
    """`await batcher.submit(table)` returns once `write` (LogStore.append + notify) has stored `table`, with
    what `write` returned for its group (the nanoseconds it took), or raises what `write` raised. Called on
    the event loop."""

    def __init__(self, write: Callable[[pa.Table], int]):
        self._write = write
        self._lock = threading.Lock()
        self._pending: list[tuple[pa.Table, asyncio.Future]] = []
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, table: pa.Table) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self._thread is None:
                self._loop = loop
                self._thread = threading.Thread(target=self._run, name="log-append-group", daemon=True)
                self._thread.start()
            self._pending.append((table, future))
        self._wake.set()
        return future

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                self._wake.clear()
                group, self._pending, closed = self._pending, [], self._closed
            if group:
                self._commit(group)
            if closed:
                return

    def _commit(self, group: list[tuple[pa.Table, asyncio.Future]]) -> None:
        outcome: list[tuple[asyncio.Future, int, BaseException | None]] = []
        start = 0
        while start < len(group):
            schema, end = group[start][0].schema, start + 1
            while end < len(group) and group[end][0].schema.equals(schema):
                end += 1
            run = group[start:end]
            value, error = 0, None
            try:
                value = self._write(run[0][0] if len(run) == 1 else pa.concat_tables([t for t, _ in run]))
            except BaseException as e:  # noqa: BLE001 - handed to every request of the run, which answers it
                error = e
            outcome += [(f, value, error) for _, f in run]
            start = end
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_settle, outcome)


def _settle(outcome: list[tuple[asyncio.Future, int, BaseException | None]]) -> None:
    for future, value, error in outcome:
        if future.done():   # its request was cancelled (the client went away)
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
