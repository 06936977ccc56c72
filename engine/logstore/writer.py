"""Writing to the inference-log store: group commit of queued appends, segment rotation, undoing a failed
write, and the bounds (capacity in bytes, number of segments) that drop the oldest segments.

`Writing` is the part of LogStore that changes segments on disk; it works on the store's index and locks
(declared in LogStore.__init__) and runs holding `_io_lock`.
"""
from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass, field, replace

import pyarrow as pa

from engine.logstore.frames import FILE_MAGIC, HEADER_SIZE, RECORDS, SCHEMA, Batch, Segment, frame_header, segment_name
from engine.logstore.state import ensure_reserve, fsync_dir, save_state
from joey.errors import StoreWriteError

log = logging.getLogger("engine.logstore")
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


@dataclass(eq=False)
class Append:
    schema: pa.Schema
    payloads: list[tuple[int, pa.Buffer, int]]  # (records, IPC message, crc32)
    done: bool = False
    error: BaseException | None = None


@dataclass(eq=False)
class SegmentWrite:
    """What one group commit adds to one segment."""

    segment: Segment
    offset: int
    created: bool
    buffers: list = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
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



class Writing:
    """Group commit, rotation and the bounds; mixed into LogStore."""

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

    def _write(self, group: list[Append]) -> None:
        first = seq = self._next_seq
        last = self._segments[-1] if self._segments else None
        current = SegmentWrite(last, last.size, False) if last is not None and last.writer else None
        writes: list[SegmentWrite] = []
        for item in group:
            for count, payload, crc in item.payloads:
                frame = HEADER_SIZE + payload.size
                if (current is None or not current.segment.schema.equals(item.schema, check_metadata=True)
                        or (current.has_records and current.end + frame > self._roll_bytes)):
                    current = self._new_segment(seq, item.schema)
                if not writes or writes[-1] is not current:
                    writes.append(current)
                current.add(frame_header(RECORDS, payload.size, seq, count, crc))
                current.add(payload)
                current.batches.append(Batch(seq, count, current.end - payload.size, payload.size, crc))
                seq += count
        try:
            for w in writes:
                if w.created:
                    w.segment.writer = open(w.segment.path, "wb", buffering=0)
                pwrite_all(w.segment.writer.fileno(), w.buffers, w.offset)
            for w in writes:
                os.fdatasync(w.segment.writer.fileno())
            if any(w.created for w in writes):
                fsync_dir(self.directory)
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

    def _new_segment(self, first_seq: int, schema: pa.Schema) -> SegmentWrite:
        seg = Segment(self.directory / segment_name(first_seq), first_seq, schema, [], 0, first_seq)
        w = SegmentWrite(seg, 0, True)
        body = schema.serialize()
        w.add(FILE_MAGIC)
        w.add(frame_header(SCHEMA, body.size, first_seq, 0, zlib.crc32(body)))
        w.add(body)
        return w

    def _undo(self, writes: list[SegmentWrite], group_end: int) -> None:
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
        """Drop the oldest segments while the store is over its capacity or has more than max_segments: each
        schema change starts a segment, and every segment costs a file to open and scan on start."""
        while len(self._segments) > 1 and (len(self._segments) > self.max_segments or (
                self.capacity_bytes is not None and self._bytes > self.capacity_bytes)):
            oldest, boundary = self._segments[0], self._segments[1].first_seq
            state = self._state
            stored = self._count_stored(state.start, boundary)
            gone = max(0, boundary - state.start)
            new = replace(state, floor=max(state.floor, boundary), dropped=state.dropped + stored,
                          lost=state.lost + gone - stored)
            try:
                save_state(self.directory, new)
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
            ensure_reserve(self.directory)

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

    def _remove(self, seg: Segment) -> None:
        seg.seal()
        try:
            seg.path.unlink(missing_ok=True)
        except OSError as exc:  # below the cursor/floor, so the next open deletes it
            log.error("inference log store %s: cannot delete %s: %s", self.directory, seg.path.name, exc)


def pwrite_all(fd: int, buffers: list, offset: int) -> None:
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

