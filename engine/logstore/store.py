"""The inference-log store: records kept under /persist until Ops acknowledges them.

Segmented append-only files of checksummed Arrow IPC record batches (frames.py), a durable upload cursor
(state.py), group-commit appends and the bounds that drop the oldest segments (writer.py), reads (reader.py).
docs/logstore.md describes the format and the guarantees; the accounting identity every method keeps is

    next_seq == records_acked + records_dropped + records_lost + records_stored
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa

from engine.logstore import reader
from engine.logstore.frames import SEGMENT_NAME, Batch, Segment, encode, scan, segment_name
from engine.logstore.state import STATE_FILE, State, ensure_reserve, load_state, save_state
from engine.logstore.writer import Append, Writing
from joey.errors import StoreWriteError

log = logging.getLogger("engine.logstore")

# A new segment costs a file creation and a directory fsync; at 10k-row requests (~1.5 MB each) 32 MiB spreads
# that over ~20 appends, where 8 MiB paid it every fifth. Recovery reads one segment at a time into memory.
SEGMENT_BYTES = 32 * 2**20
# Every schema change starts a segment (a request with an extra column of its own, say); past this many the
# oldest go, as past the capacity, so opening the store never walks more files than this.
MAX_SEGMENTS = 4096


@dataclass(frozen=True)
class Page:
    """Records [seq_start, seq_end), one row per sequence number: table.num_rows == seq_end - seq_start."""

    seq_start: int
    seq_end: int
    table: pa.Table


@dataclass(frozen=True)
class StoreStats:
    """Counters of a store; next_seq == records_acked + records_dropped + records_lost + records_stored.

    records_stored: readable records not yet acknowledged; bytes_stored: size of all segment files;
    records_dropped: records removed unacknowledged to stay within capacity; records_lost: records that were
    damaged, deleted or failed to write; cursor: every sequence number below it is acknowledged or gone;
    next_seq: the sequence number the next stored record gets; records_acked: records acknowledged by Ops.
    """

    records_stored: int
    bytes_stored: int
    records_dropped: int
    records_lost: int
    cursor: int
    next_seq: int
    records_acked: int


@dataclass(frozen=True)
class Window:
    """The newest stored records below some sequence number: those in [seq_start, seq_end) (records lost
    there are missing), and whether older stored records remain (ask again with before=seq_start)."""

    seq_start: int
    seq_end: int
    table: pa.Table
    more: bool


class LogStore(Writing):
    """Inference records on local disk, oldest dropped first past `capacity_bytes`, paged out to Ops.

    Thread-safe. One process per directory.
    """

    def __init__(self, directory: Path, capacity_bytes: int | None = None, *,
                 segment_bytes: int = SEGMENT_BYTES, max_segments: int = MAX_SEGMENTS):
        if capacity_bytes is not None and capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        if max_segments < 1:
            raise ValueError(f"max_segments must be positive, got {max_segments}")
        self.directory = Path(directory)
        self.capacity_bytes = capacity_bytes
        self.max_segments = max_segments
        # Segments are the unit of dropping; a quarter of a small capacity keeps three quarters of it in use.
        self._roll_bytes = segment_bytes if capacity_bytes is None else max(1, min(segment_bytes,
                                                                                   capacity_bytes // 4))
        # Lock order: _io_lock, then _cond. The index is changed only holding both, read holding either.
        self._io_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: list[Append] = []
        self._leading = False
        self._closed = False
        self._segments: list[Segment] = []
        self._state = State(0, 0, 0, 0, 0)
        self._stored = 0  # readable records at or above self._state.start
        self._bytes = 0
        self._next_seq = 0
        self._recover()

    # ----------------------------------------------------------------------------------------------- public

    def append(self, table: pa.Table) -> None:
        """Store `table`'s rows; returns once they are fsync'd. Raises StoreWriteError if they could not be."""
        schema, payloads = encode(table)
        if not payloads:
            return
        item = Append(schema, payloads)
        with self._cond:
            self._check_open()
            self._queue.append(item)
            while not item.done and self._leading:
                self._cond.wait()
            lead = not item.done
            if lead:
                self._leading = True
        if lead:
            self._lead()
        if item.error is not None:
            raise item.error

    def read(self, limit: int | None = None) -> pa.Table:
        """Stored (unacknowledged) records, oldest first; with `limit`, only the `limit` newest of them.

        Tables of different schemas are merged (reader.merge): missing columns become nulls, numeric types
        widen, and a column whose types cannot be widened into one is read as the JSON text of its values.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        return self._window(limit, None, None).table

    def newest(self, limit: int, *, before: int | None = None, max_bytes: int | None = None) -> Window:
        """The `limit` newest stored records below sequence number `before` (all, without it), oldest first,
        and no more of them than fit in `max_bytes` stored bytes (one at least): what POST /logs answers."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        return self._window(limit, before, max_bytes)

    def _window(self, limit: int | None, before: int | None, max_bytes: int | None) -> Window:
        while True:
            with self._cond:
                self._check_open()
                hi = self._next_seq if before is None else max(0, min(before, self._next_seq))
                every = list(reader.runs(self._segments, self._state.start, hi))
                runs = every if limit is None else reader.newest(every, limit, max_bytes)
                plan = reader.open_plan(self.directory, runs)
                empty = self._empty_table()
            tables, bad = reader.load(self.directory, plan)
            if bad:
                self._forget(bad)
                continue
            if not runs:
                return Window(hi, hi, empty, bool(every))
            first, last = runs[0], runs[-1]
            start = first[1].first_seq + first[2]
            return Window(start, last[1].first_seq + last[2] + last[3], reader.merge(tables),
                          start > every[0][1].first_seq + every[0][2])

    def next_page(self, max_records: int) -> Page | None:
        """The oldest unacknowledged records: at most `max_records` with consecutive sequence numbers and one
        schema. The same page comes back until it is acknowledged; None when nothing is waiting."""
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        while True:
            with self._cond:
                self._check_open()
                stored = reader.runs(self._segments, self._state.start, self._next_seq)
                runs = reader.first_page(stored, max_records)
                plan = reader.open_plan(self.directory, runs)
            if not runs:
                return None
            tables, bad = reader.load(self.directory, plan)
            if bad:
                self._forget(bad)
                continue
            _, batch, first, _ = runs[0]
            _, last, last_first, last_n = runs[-1]
            table = pa.concat_tables(tables).combine_chunks()
            return Page(batch.first_seq + first, last.first_seq + last_first + last_n, table)

    def ack(self, seq_end: int) -> None:
        """Ops holds every record below `seq_end`: persist the cursor (atomically) and delete spent segments."""
        with self._io_lock:
            self._check_open()
            if seq_end > self._next_seq:
                raise ValueError(f"cannot acknowledge up to {seq_end}: records stop at {self._next_seq}")
            state = self._state
            if seq_end <= state.cursor:
                return
            start = state.start
            stored = self._count_stored(start, seq_end)
            gone = max(0, seq_end - start)
            new = replace(state, cursor=seq_end, acked=state.acked + stored, lost=state.lost + gone - stored)
            try:
                save_state(self.directory, new)
            except OSError as exc:
                raise StoreWriteError(self.directory, exc) from exc
            with self._cond:
                self._state = new
                self._stored -= stored
            if self._delete_spent():
                ensure_reserve(self.directory)

    def stats(self) -> StoreStats:
        with self._cond:
            s = self._state
            live_lost = self._next_seq - s.start - self._stored
            return StoreStats(records_stored=self._stored, bytes_stored=self._bytes, records_dropped=s.dropped,
                              records_lost=s.lost + live_lost, cursor=s.cursor, next_seq=self._next_seq,
                              records_acked=s.acked)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            while self._leading or self._queue:
                self._cond.wait()
        with self._io_lock:
            for seg in self._segments:
                seg.seal()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        d = self.directory
        try:
            d.mkdir(parents=True, exist_ok=True)
            for tmp in d.glob(".*.tmp"):  # left by atomic writes a crash interrupted
                tmp.unlink(missing_ok=True)
            firsts = sorted(int(m[1]) for p in d.iterdir() if (m := SEGMENT_NAME.fullmatch(p.name)))
        except OSError as exc:
            raise StoreWriteError(d, exc) from exc
        segments = [scan(d / segment_name(first), first, firsts[i + 1] if i + 1 < len(firsts) else None)
                    for i, first in enumerate(firsts)]
        ensure_reserve(self.directory)
        state = load_state(d)
        if state is None:
            # Without the cursor, what preceded the oldest segment is taken as acknowledged (the usual reason
            # segments are gone) rather than counted as lost.
            base = firsts[0] if firsts else 0
            state = State(cursor=base, floor=base, acked=base, dropped=0, lost=0)
            try:
                save_state(self.directory, state)
            except OSError as exc:
                log.error("inference log store %s: cannot write %s: %s", d, STATE_FILE, exc)
        start = state.start
        self._next_seq = max(start, segments[-1].end_seq if segments else 0)
        self._state = state
        self._segments = segments
        self._bytes = sum(s.size for s in segments)
        self._delete_spent()
        self._stored = self._count_stored(start, self._next_seq)
        if self._segments and self._segments[-1].clean:
            self._segments[-1].writer = open(self._segments[-1].path, "r+b", buffering=0)
        self._enforce_capacity()   # the bounds may have been lowered since the last run
        lost = self._next_seq - self._state.start - self._stored
        if lost:
            log.warning("inference log store %s: %d unacknowledged records are missing or damaged; "
                        "%d records recovered", d, lost, self._stored)

    # ------------------------------------------------------------------------------------------- reading

    def _count_stored(self, lo: int, hi: int) -> int:
        return sum(n for *_, n in reader.runs(self._segments, lo, hi))

    def _forget(self, bad: list[tuple[Segment, Batch]]) -> None:
        """Batches damaged after the store opened: count them as lost, as the next open would."""
        with self._io_lock, self._cond:
            start = self._state.start
            for seg, batch in bad:
                if batch in seg.batches:
                    seg.batches.remove(batch)
                    self._stored -= max(0, batch.end_seq - max(start, batch.first_seq))
                    log.error("inference log store %s: records %d..%d in %s are damaged; counted as lost",
                              self.directory, batch.first_seq, batch.end_seq - 1, seg.path.name)

    def _empty_table(self) -> pa.Table:
        schemas = [s.schema for s in self._segments if s.schema is not None]
        return schemas[-1].empty_table() if schemas else pa.table({})

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"inference log store {self.directory} is closed")
