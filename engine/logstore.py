"""The edge engine's local inference-log store: records kept under /persist until Ops acknowledges them.

Segmented append-only files of checksummed Arrow IPC record batches, a durable upload cursor, group-commit
appends and a byte bound (LOCAL_INFERENCE_STORAGE). docs/logstore.md describes the format and the guarantees;
the accounting identity every method keeps is

    next_seq == records_acked + records_dropped + records_lost + records_stored
"""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import struct
import threading
import zlib
from bisect import bisect_right
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from joey.errors import JoeyError
from joey.fsutil import write_atomic

log = logging.getLogger(__name__)

FILE_MAGIC = b"JOEYLOG1"
FRAME_MAGIC = b"JLF1"
# magic, crc32 of the 24 bytes after it, kind, 3 pad bytes, payload length, first seq, record count, payload crc32
_HEADER = struct.Struct("<4sIB3xIQII")
HEADER_SIZE = _HEADER.size  # 32
_SCHEMA, _RECORDS = 1, 2
_STATE_FILE = "state.json"
# Space set aside so the cursor can still be written (and acknowledged segments deleted) on a full volume.
_RESERVE_FILE = "reserve"
_RESERVE_BYTES = 64 * 1024
_SEGMENT_NAME = re.compile(r"(\d{20})\.seg")
# One append becomes several frames only past this size, so a frame length always fits its u32 field.
_MAX_FRAME_PAYLOAD = 64 * 2**20
# A new segment costs a file creation and a directory fsync; at 10k-row requests (~1.5 MB each) 32 MiB spreads
# that over ~20 appends, where 8 MiB paid it every fifth. Recovery reads one segment at a time into memory.
SEGMENT_BYTES = 32 * 2**20
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
# Records at least this large are written with LZ4-compressed buffers (Arrow IPC body compression): the
# metadata columns repeat one value on every row and shrink ~20x, which halves what each fdatasync flushes for
# a 10k-row request at ~0.4 ms of CPU; smaller records cost less to write as they are.
_COMPRESS_MIN_BYTES = 64 * 1024
_LZ4 = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)  # threads only cost on a 1-CPU edge


class StoreWriteError(JoeyError):
    """Records could not be made durable (disk full, I/O error); nothing of the failed append is kept."""

    http_status = 507

    def __init__(self, directory: Path, cause: OSError):
        self.errno = cause.errno
        self.directory = directory
        if cause.errno == errno.ENOSPC:
            hint = f"the volume holding {directory} is full: free space or set LOCAL_INFERENCE_STORAGE below its size"
        else:
            self.http_status = 500
            hint = "the volume reported an error; check the disk"
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        super().__init__(f"inference log store {directory}: could not write records: {reason}", hint=hint)


class StoreReadError(JoeyError):
    """Stored records could not be read back or merged into one table."""

    http_status = 500

    def __init__(self, directory: Path, problem: str):
        super().__init__(f"inference log store {directory}: {problem}")


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
class _State:
    """What state.json keeps. Every sequence number below max(cursor, floor) is counted in acked, dropped or
    lost, so acked + dropped + lost == max(cursor, floor)."""

    cursor: int
    floor: int
    acked: int
    dropped: int
    lost: int

    @property
    def start(self) -> int:
        return max(self.cursor, self.floor)


@dataclass(frozen=True, slots=True)
class _Batch:
    first_seq: int
    count: int
    offset: int  # of the payload in the segment file
    length: int
    crc: int

    @property
    def end_seq(self) -> int:
        return self.first_seq + self.count


@dataclass(eq=False)
class _Segment:
    path: Path
    first_seq: int
    schema: pa.Schema | None
    batches: list[_Batch]
    size: int
    end_seq: int  # one past the highest sequence number any frame in the file claims
    clean: bool = False  # no damage found: appends may go on at its end
    writer: io.FileIO | None = None  # only the newest, undamaged segment takes appends

    def seal(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass(eq=False)
class _Append:
    schema: pa.Schema
    payloads: list[tuple[int, pa.Buffer, int]]  # (records, IPC message, crc32)
    done: bool = False
    error: BaseException | None = None


@dataclass(eq=False)
class _SegmentWrite:
    """What one group commit adds to one segment."""

    segment: _Segment
    offset: int
    created: bool
    buffers: list = field(default_factory=list)
    batches: list[_Batch] = field(default_factory=list)
    size: int = 0

    def add(self, data) -> None:
        self.buffers.append(data)
        self.size += len(data) if isinstance(data, bytes) else data.size

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def has_records(self) -> bool:
        return bool(self.batches or self.segment.batches)


class LogStore:
    """Inference records on local disk, oldest dropped first past `capacity_bytes`, paged out to Ops.

    Thread-safe. One process per directory.
    """

    def __init__(self, directory: Path, capacity_bytes: int | None = None, *,
                 segment_bytes: int = SEGMENT_BYTES):
        if capacity_bytes is not None and capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        self.directory = Path(directory)
        self.capacity_bytes = capacity_bytes
        # Segments are the unit of dropping; a quarter of a small capacity keeps three quarters of it in use.
        self._roll_bytes = segment_bytes if capacity_bytes is None else max(1, min(segment_bytes,
                                                                                   capacity_bytes // 4))
        # Lock order: _io_lock, then _cond. The index is changed only holding both, read holding either.
        self._io_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: list[_Append] = []
        self._leading = False
        self._closed = False
        self._segments: list[_Segment] = []
        self._state = _State(0, 0, 0, 0, 0)
        self._stored = 0  # readable records at or above self._state.start
        self._bytes = 0
        self._next_seq = 0
        self._recover()

    # ----------------------------------------------------------------------------------------------- public

    def append(self, table: pa.Table) -> None:
        """Store `table`'s rows; returns once they are fsync'd. Raises StoreWriteError if they could not be."""
        schema, payloads = _encode(table)
        if not payloads:
            return
        item = _Append(schema, payloads)
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

        Tables of different pipeline versions are merged: missing columns become nulls and numeric types widen.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        while True:
            with self._cond:
                self._check_open()
                runs = list(self._runs(self._state.start, self._next_seq))
                if limit is not None:
                    runs = _newest(runs, limit)
                plan = self._open_plan(runs)
                empty = self._empty_table()
            tables, bad = self._load(plan)
            if bad:
                self._forget(bad)
                continue
            return self._merge(tables) if tables else empty

    def next_page(self, max_records: int) -> Page | None:
        """The oldest unacknowledged records: at most `max_records` with consecutive sequence numbers and one
        schema. The same page comes back until it is acknowledged; None when nothing is waiting."""
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        while True:
            with self._cond:
                self._check_open()
                runs = _first_page(self._runs(self._state.start, self._next_seq), max_records)
                plan = self._open_plan(runs)
            if not runs:
                return None
            tables, bad = self._load(plan)
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
                self._save_state(new)
            except OSError as exc:
                raise StoreWriteError(self.directory, exc) from exc
            with self._cond:
                self._state = new
                self._stored -= stored
            if self._delete_spent():
                self._ensure_reserve()

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
            firsts = sorted(int(m[1]) for p in d.iterdir() if (m := _SEGMENT_NAME.fullmatch(p.name)))
        except OSError as exc:
            raise StoreWriteError(d, exc) from exc
        segments = [_scan(d / _segment_name(first), first, firsts[i + 1] if i + 1 < len(firsts) else None)
                    for i, first in enumerate(firsts)]
        self._ensure_reserve()
        state = self._load_state()
        if state is None:
            # Without the cursor, what preceded the oldest segment is taken as acknowledged (the usual reason
            # segments are gone) rather than counted as lost.
            base = firsts[0] if firsts else 0
            state = _State(cursor=base, floor=base, acked=base, dropped=0, lost=0)
            try:
                self._save_state(state)
            except OSError as exc:
                log.error("inference log store %s: cannot write %s: %s", d, _STATE_FILE, exc)
        start = state.start
        self._next_seq = max(start, segments[-1].end_seq if segments else 0)
        self._state = state
        self._segments = segments
        self._bytes = sum(s.size for s in segments)
        self._delete_spent()
        self._stored = self._count_stored(start, self._next_seq)
        if self._segments and self._segments[-1].clean:
            self._segments[-1].writer = open(self._segments[-1].path, "r+b", buffering=0)
        lost = self._next_seq - start - self._stored
        if lost:
            log.warning("inference log store %s: %d unacknowledged records are missing or damaged; "
                        "%d records recovered", d, lost, self._stored)

    def _load_state(self) -> _State | None:
        path = self.directory / _STATE_FILE
        try:
            raw = json.loads(path.read_bytes())
            state = _State(**{k: int(raw[k]) for k in ("cursor", "floor", "acked", "dropped", "lost")})
            if min(asdict(state).values()) < 0 or state.acked + state.dropped + state.lost != state.start:
                raise ValueError("inconsistent counters")
            return state
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("inference log store %s: %s is unreadable (%s); starting from the oldest segment",
                      self.directory, _STATE_FILE, exc)
            return None

    def _save_state(self, state: _State) -> None:
        data = json.dumps({"format": 1, **asdict(state)}).encode()
        try:
            write_atomic(self.directory / _STATE_FILE, data)
        except OSError as exc:
            reserve = self.directory / _RESERVE_FILE
            if exc.errno != errno.ENOSPC or not reserve.exists():
                raise
            reserve.unlink()
            write_atomic(self.directory / _STATE_FILE, data)
        _fsync_dir(self.directory)

    def _ensure_reserve(self) -> None:
        reserve = self.directory / _RESERVE_FILE
        if reserve.exists():
            return
        try:
            write_atomic(reserve, bytes(_RESERVE_BYTES))
        except OSError as exc:
            log.warning("inference log store %s: cannot set aside %d bytes for the cursor: %s",
                        self.directory, _RESERVE_BYTES, exc)

    # ------------------------------------------------------------------------------------------- writing

    def _lead(self) -> None:
        """Write every queued append with one fsync per touched segment, then hand leadership on."""
        try:
            with self._io_lock:
                with self._cond:
                    group, self._queue = self._queue, []
                error: BaseException | None = None
                try:
                    self._write(group)
                except OSError as exc:
                    log.error("inference log store %s: append failed: %s", self.directory, exc)
                    error = StoreWriteError(self.directory, exc)
                except BaseException as exc:
                    error = exc
                with self._cond:
                    for item in group:
                        item.done, item.error = True, error
                    self._cond.notify_all()
                if error is None:
                    self._enforce_capacity()
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()

    def _write(self, group: list[_Append]) -> None:
        first = seq = self._next_seq
        last = self._segments[-1] if self._segments else None
        current = _SegmentWrite(last, last.size, False) if last is not None and last.writer else None
        writes: list[_SegmentWrite] = []
        for item in group:
            for count, payload, crc in item.payloads:
                frame = HEADER_SIZE + payload.size
                if (current is None or not current.segment.schema.equals(item.schema, check_metadata=True)
                        or (current.has_records and current.end + frame > self._roll_bytes)):
                    current = self._new_segment(seq, item.schema)
                if not writes or writes[-1] is not current:
                    writes.append(current)
                current.add(_frame_header(_RECORDS, payload.size, seq, count, crc))
                current.add(payload)
                current.batches.append(_Batch(seq, count, current.end - payload.size, payload.size, crc))
                seq += count
        try:
            for w in writes:
                if w.created:
                    w.segment.writer = open(w.segment.path, "wb", buffering=0)
                _pwrite_all(w.segment.writer.fileno(), w.buffers, w.offset)
            for w in writes:
                os.fdatasync(w.segment.writer.fileno())
            if any(w.created for w in writes):
                _fsync_dir(self.directory)
        except OSError:
            self._undo(writes, seq)
            raise
        with self._cond:
            for w in writes:
                seg = w.segment
                if w.created:
                    if self._segments and self._segments[-1].first_seq == seg.first_seq:
                        # An empty leftover of a crash during creation, overwritten by this segment.
                        self._bytes -= self._segments.pop().size
                    if self._segments:
                        self._segments[-1].seal()
                    self._segments.append(seg)
                seg.batches.extend(w.batches)
                seg.size += w.size
                seg.end_seq = seg.batches[-1].end_seq
                self._bytes += w.size
            self._stored += seq - first
            self._next_seq = seq

    def _new_segment(self, first_seq: int, schema: pa.Schema) -> _SegmentWrite:
        seg = _Segment(self.directory / _segment_name(first_seq), first_seq, schema, [], 0, first_seq)
        w = _SegmentWrite(seg, 0, True)
        body = schema.serialize()
        w.add(FILE_MAGIC)
        w.add(_frame_header(_SCHEMA, body.size, first_seq, 0, zlib.crc32(body)))
        w.add(body)
        return w

    def _undo(self, writes: list[_SegmentWrite], group_end: int) -> None:
        """Take back a failed group so no partial frame stays behind. If that fails too, its sequence numbers
        are spent (counted as lost) so they never name two different records."""
        clean = True
        for w in writes:
            try:
                if w.created:
                    w.segment.seal()
                    w.segment.path.unlink(missing_ok=True)
                elif w.segment.writer is not None:
                    os.ftruncate(w.segment.writer.fileno(), w.offset)
            except OSError as exc:
                log.error("inference log store %s: cannot remove a failed write from %s: %s",
                          self.directory, w.segment.path.name, exc)
                clean = False
        with self._cond:
            if self._segments:
                # After a failed fsync the file's cached pages cannot be trusted: write on in a new segment.
                self._segments[-1].seal()
            if not clean:
                self._next_seq = group_end

    def _enforce_capacity(self) -> None:
        while (self.capacity_bytes is not None and self._bytes > self.capacity_bytes
               and len(self._segments) > 1):
            oldest, boundary = self._segments[0], self._segments[1].first_seq
            state = self._state
            stored = self._count_stored(state.start, boundary)
            gone = max(0, boundary - state.start)
            new = replace(state, floor=max(state.floor, boundary), dropped=state.dropped + stored,
                          lost=state.lost + gone - stored)
            try:
                self._save_state(new)
            except OSError as exc:
                log.error("inference log store %s: cannot drop %s to stay within capacity: %s",
                          self.directory, oldest.path.name, exc)
                return
            if stored:
                log.warning("inference log store %s: full, dropped %d unacknowledged records (%s)",
                            self.directory, stored, oldest.path.name)
            with self._cond:
                self._state = new
                self._stored -= stored
                self._segments.pop(0)
                self._bytes -= oldest.size
            self._remove(oldest)
            self._ensure_reserve()

    def _delete_spent(self) -> bool:
        """Delete segments whose every record is below max(cursor, floor): acknowledged or accounted."""
        start, deleted = self._state.start, False
        while self._segments:
            seg = self._segments[0]
            upper = self._segments[1].first_seq if len(self._segments) > 1 else seg.end_seq
            if upper > start:
                break
            with self._cond:
                self._segments.pop(0)
                self._bytes -= seg.size
            self._remove(seg)
            deleted = True
        return deleted

    def _remove(self, seg: _Segment) -> None:
        seg.seal()
        try:
            seg.path.unlink(missing_ok=True)
        except OSError as exc:  # below the cursor/floor, so the next open deletes it
            log.error("inference log store %s: cannot delete %s: %s", self.directory, seg.path.name, exc)

    # ------------------------------------------------------------------------------------------- reading

    def _runs(self, lo: int, hi: int) -> Iterator[tuple[_Segment, _Batch, int, int]]:
        """(segment, batch, first row, rows) for every stored record in [lo, hi), in sequence order."""
        for i, seg in enumerate(self._segments):
            upper = self._segments[i + 1].first_seq if i + 1 < len(self._segments) else seg.end_seq
            if upper <= lo or not seg.batches:
                continue
            if seg.first_seq >= hi:
                return
            j = max(0, bisect_right(seg.batches, lo, key=lambda b: b.first_seq) - 1)
            for batch in seg.batches[j:]:
                if batch.first_seq >= hi:
                    return
                a, b = max(lo, batch.first_seq), min(hi, batch.end_seq)
                if a < b:
                    yield seg, batch, a - batch.first_seq, b - a

    def _count_stored(self, lo: int, hi: int) -> int:
        return sum(n for *_, n in self._runs(lo, hi))

    def _open_plan(self, runs):
        """Open each segment the runs need while the index lock is held, so a concurrent ack or drop that
        unlinks it cannot pull it away."""
        plan: list[tuple[_Segment, int, list]] = []
        try:
            for run in runs:
                if not plan or plan[-1][0] is not run[0]:
                    plan.append((run[0], os.open(run[0].path, os.O_RDONLY), []))
                plan[-1][2].append(run)
        except OSError as exc:
            for _, fd, _ in plan:
                os.close(fd)
            raise StoreReadError(self.directory, f"cannot open {run[0].path.name}: {exc}") from exc
        return plan

    def _load(self, plan) -> tuple[list[pa.Table], list[tuple[_Segment, _Batch]]]:
        """One table per segment in the plan, and the batches that failed their checksum."""
        tables, bad = [], []
        for seg, fd, runs in plan:
            try:
                lo = runs[0][1].offset
                data = os.pread(fd, runs[-1][1].offset + runs[-1][1].length - lo, lo)
            except OSError as exc:
                raise StoreReadError(self.directory, f"cannot read {seg.path.name}: {exc}") from exc
            finally:
                os.close(fd)
            view = memoryview(data)
            batches = []
            for _, batch, first, n in runs:
                payload = view[batch.offset - lo:batch.offset - lo + batch.length]
                if len(payload) != batch.length or zlib.crc32(payload) != batch.crc:
                    bad.append((seg, batch))
                    continue
                try:
                    batches.append(pa.ipc.read_record_batch(pa.py_buffer(payload), seg.schema).slice(first, n))
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowKeyError):
                    bad.append((seg, batch))
            tables.append(pa.Table.from_batches(batches, seg.schema))
        return tables, bad

    def _forget(self, bad: list[tuple[_Segment, _Batch]]) -> None:
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

    def _merge(self, tables: list[pa.Table]) -> pa.Table:
        try:
            return pa.concat_tables(tables, promote_options="permissive").combine_chunks()
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise StoreReadError(self.directory, f"records of different pipeline versions cannot be merged "
                                                 f"into one table: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"inference log store {self.directory} is closed")


# ------------------------------------------------------------------------------------------------ helpers

def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.seg"


def _frame_header(kind: int, length: int, first_seq: int, count: int, payload_crc: int) -> bytes:
    packed = _HEADER.pack(FRAME_MAGIC, 0, kind, length, first_seq, count, payload_crc)
    return FRAME_MAGIC + struct.pack("<I", zlib.crc32(packed[8:])) + packed[8:]


def _encode(table: pa.Table) -> tuple[pa.Schema, list[tuple[int, pa.Buffer, int]]]:
    """IPC messages of `table`'s rows under the schema its segment will carry."""
    if not isinstance(table, pa.Table):
        raise TypeError(f"LogStore.append takes a pyarrow.Table, not {type(table).__name__}")
    # Schema metadata (pandas' index description, for one) changes per request and would start a segment each.
    table = table.replace_schema_metadata(None)
    # A batch message alone cannot carry dictionaries, so dictionary columns are stored decoded.
    if any(pa.types.is_dictionary(f.type) for f in table.schema):
        table = table.cast(pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
                                      for f in table.schema]))
    if table.num_rows == 0:
        return table.schema, []
    table = table.combine_chunks()
    rows = max(1, table.num_rows * _MAX_FRAME_PAYLOAD // max(1, table.nbytes))
    payloads = []
    for batch in table.to_batches(max_chunksize=rows):
        message = _message(batch)
        if message.size > 0xFFFFFFFF:
            raise ValueError(f"a single record of {message.size} bytes is too large for the log store")
        payloads.append((batch.num_rows, message, zlib.crc32(message)))
    return table.schema, payloads


def _message(batch: pa.RecordBatch) -> pa.Buffer:
    """The record-batch IPC message of `batch`, compressed when it is large."""
    if batch.nbytes < _COMPRESS_MIN_BYTES:
        return batch.serialize()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=_LZ4) as writer:
        writer.write_batch(batch)
    stream = sink.getvalue()
    reader = pa.BufferReader(stream)
    pa.ipc.read_message(reader)            # the stream's schema message
    start = reader.tell()
    pa.ipc.read_message(reader)            # the batch's (zero-copy: only the position matters)
    return stream.slice(start, reader.tell() - start)


def _pwrite_all(fd: int, buffers: list, offset: int) -> None:
    views = [memoryview(b) for b in buffers]
    i = 0
    while i < len(views):
        written = os.pwritev(fd, views[i:i + _IOV_MAX], offset)
        offset += written
        while i < len(views) and written >= views[i].nbytes:
            written -= views[i].nbytes
            i += 1
        if written:
            views[i] = views[i][written:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _newest(runs: list, limit: int) -> list:
    """The runs covering the `limit` newest records, the oldest of them cut to fit."""
    kept, total = [], 0
    for seg, batch, first, n in reversed(runs):
        if total >= limit:
            break
        take = min(n, limit - total)
        kept.append((seg, batch, first + n - take, take))
        total += take
    return kept[::-1]


def _first_page(runs: Iterator, max_records: int) -> list:
    """The leading runs with consecutive sequence numbers and one schema, cut to `max_records`."""
    page, total, next_seq = [], 0, None
    for seg, batch, first, n in runs:
        seq = batch.first_seq + first
        if page and (seq != next_seq or not seg.schema.equals(page[0][0].schema, check_metadata=True)):
            break
        take = min(n, max_records - total)
        page.append((seg, batch, first, take))
        total += take
        next_seq = seq + take
        if total == max_records:
            break
    return page


def _parse_header(data: bytes, pos: int) -> tuple[int, int, int, int, int] | None:
    magic, header_crc, kind, length, first_seq, count, payload_crc = _HEADER.unpack_from(data, pos)
    if magic != FRAME_MAGIC or zlib.crc32(data[pos + 8:pos + HEADER_SIZE]) != header_crc:
        return None
    if kind not in (_SCHEMA, _RECORDS):
        return None
    return kind, length, first_seq, count, payload_crc


def _scan(path: Path, first_seq: int, next_first: int | None) -> _Segment:
    """Index one segment file, keeping every intact record frame and skipping damage.

    A frame whose header checks out but whose payload does not is skipped by its length; a damaged header is
    skipped by searching for the next frame magic whose header checks out. `end_seq` covers every frame whose
    header checks out, so records whose header survived are counted as lost, not reused.
    """
    seg = _Segment(path, first_seq, None, [], 0, first_seq)
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.error("inference log store: cannot read %s (%s); its records are lost", path, exc)
        seg.size = _size(path)
        return seg
    seg.size = len(data)
    problems: list[str] = []
    pos = len(FILE_MAGIC)
    if data[:pos] != FILE_MAGIC:
        problems.append("bad file header")
        pos = 0
    expected = first_seq
    while pos + HEADER_SIZE <= len(data):
        header = _parse_header(data, pos)
        if header is not None:
            kind, length, seq, count, crc = header
            if kind == _SCHEMA:
                valid = seq == first_seq and count == 0 and seg.schema is None and expected == first_seq
            else:
                valid = count > 0 and seq >= expected and (next_first is None or seq + count <= next_first)
            if not valid:
                header = None
        if header is None:
            problems.append(f"unreadable frame header at byte {pos}")
            pos = data.find(FRAME_MAGIC, pos + 1)
            if pos < 0:
                pos = len(data)
            continue
        end = pos + HEADER_SIZE + length
        if kind == _RECORDS:
            expected = seq + count
            seg.end_seq = max(seg.end_seq, expected)
        if end > len(data):
            problems.append(f"frame at byte {pos} cut short")
            pos = len(data)
            break
        payload = memoryview(data)[pos + HEADER_SIZE:end]
        if zlib.crc32(payload) != crc:
            problems.append(f"checksum mismatch in frame at byte {pos}")
        elif kind == _SCHEMA:
            try:
                seg.schema = pa.ipc.read_schema(pa.py_buffer(payload))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                problems.append(f"unreadable schema: {exc}")
        elif seg.schema is None:
            problems.append(f"records at byte {pos} without a readable schema")
        else:
            seg.batches.append(_Batch(seq, count, pos + HEADER_SIZE, length, crc))
        pos = end
    if pos < len(data):
        problems.append(f"{len(data) - pos} stray bytes at the end")
    if problems:
        log.warning("inference log store: %s is damaged (%s); kept %d intact batches",
                    path, "; ".join(problems[:5]), len(seg.batches))
    seg.clean = not problems and seg.schema is not None and bool(seg.batches)
    return seg


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
