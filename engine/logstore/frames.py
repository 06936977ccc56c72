"""The segment file format of the inference-log store: frames, their headers, and reading a segment back.

A segment is FILE_MAGIC followed by frames, each a 32-byte checksummed header and a payload: first the
segment's Arrow schema, then Arrow IPC record-batch messages (docs/logstore.md draws the layout). `scan`
indexes a file on open, skipping damage; `encode` turns a table into the messages an append writes.
"""
from __future__ import annotations

import io
import logging
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

log = logging.getLogger("engine.logstore")

FILE_MAGIC = b"JOEYLOG1"
FRAME_MAGIC = b"JLF1"
# magic, crc32 of the 24 bytes after it, kind, 3 pad bytes, payload length, first seq, record count, payload crc32
HEADER = struct.Struct("<4sIB3xIQII")
HEADER_SIZE = HEADER.size  # 32
SCHEMA, RECORDS = 1, 2
SEGMENT_NAME = re.compile(r"(\d{20})\.seg")
# One append becomes several frames only past this size, so a frame length always fits its u32 field.
MAX_FRAME_PAYLOAD = 64 * 2**20
# Records at least this large are written with LZ4-compressed buffers (Arrow IPC body compression): the
# metadata columns repeat one value on every row and shrink ~20x, which halves what each fdatasync flushes for
# a 10k-row request at ~0.4 ms of CPU; smaller records cost less to write as they are.
COMPRESS_MIN_BYTES = 64 * 1024
LZ4 = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)  # threads only cost on a 1-CPU edge


@dataclass(frozen=True, slots=True)
class Batch:
    first_seq: int
    count: int
    offset: int  # of the payload in the segment file
    length: int
    crc: int

    @property
    def end_seq(self) -> int:
        return self.first_seq + self.count


@dataclass(eq=False)
class Segment:
    path: Path
    first_seq: int
    schema: pa.Schema | None
    batches: list[Batch]
    size: int
    end_seq: int  # one past the highest sequence number any frame in the file claims
    clean: bool = False  # no damage found: appends may go on at its end
    writer: io.FileIO | None = None  # only the newest, undamaged segment takes appends

    def seal(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.seg"


def frame_header(kind: int, length: int, first_seq: int, count: int, payload_crc: int) -> bytes:
    packed = HEADER.pack(FRAME_MAGIC, 0, kind, length, first_seq, count, payload_crc)
    return FRAME_MAGIC + struct.pack("<I", zlib.crc32(packed[8:])) + packed[8:]


def encode(table: pa.Table) -> tuple[pa.Schema, list[tuple[int, pa.Buffer, int]]]:
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
    rows = max(1, table.num_rows * MAX_FRAME_PAYLOAD // max(1, table.nbytes))
    payloads = []
    for batch in table.to_batches(max_chunksize=rows):
        message = ipc_message(batch)
        if message.size > 0xFFFFFFFF:
            raise ValueError(f"a single record of {message.size} bytes is too large for the log store")
        payloads.append((batch.num_rows, message, zlib.crc32(message)))
    return table.schema, payloads


def ipc_message(batch: pa.RecordBatch) -> pa.Buffer:
    """The record-batch IPC message of `batch`, compressed when it is large."""
    if batch.nbytes < COMPRESS_MIN_BYTES:
        return batch.serialize()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=LZ4) as writer:
        writer.write_batch(batch)
    stream = sink.getvalue()
    reader = pa.BufferReader(stream)
    pa.ipc.read_message(reader)            # the stream's schema message
    start = reader.tell()
    pa.ipc.read_message(reader)            # the batch's (zero-copy: only the position matters)
    return stream.slice(start, reader.tell() - start)


def parse_header(data: bytes, pos: int) -> tuple[int, int, int, int, int] | None:
    magic, header_crc, kind, length, first_seq, count, payload_crc = HEADER.unpack_from(data, pos)
    if magic != FRAME_MAGIC or zlib.crc32(data[pos + 8:pos + HEADER_SIZE]) != header_crc:
        return None
    if kind not in (SCHEMA, RECORDS):
        return None
    return kind, length, first_seq, count, payload_crc


def scan(path: Path, first_seq: int, next_first: int | None) -> Segment:
    """Index one segment file, keeping every intact record frame and skipping damage.

    A frame whose header checks out but whose payload does not is skipped by its length; a damaged header is
    skipped by searching for the next frame magic whose header checks out. `end_seq` covers every frame whose
    header checks out, so records whose header survived are counted as lost, not reused.
    """
    seg = Segment(path, first_seq, None, [], 0, first_seq)
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.error("inference log store: cannot read %s (%s); its records are lost", path, exc)
        seg.size = file_size(path)
        return seg
    seg.size = len(data)
    problems: list[str] = []
    pos = len(FILE_MAGIC)
    if data[:pos] != FILE_MAGIC:
        problems.append("bad file header")
        pos = 0
    expected = first_seq
    while pos + HEADER_SIZE <= len(data):
        header = parse_header(data, pos)
        if header is not None:
            kind, length, seq, count, crc = header
            if kind == SCHEMA:
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
        if kind == RECORDS:
            expected = seq + count
            seg.end_seq = max(seg.end_seq, expected)
        if end > len(data):
            problems.append(f"frame at byte {pos} cut short")
            pos = len(data)
            break
        payload = memoryview(data)[pos + HEADER_SIZE:end]
        if zlib.crc32(payload) != crc:
            problems.append(f"checksum mismatch in frame at byte {pos}")
        elif kind == SCHEMA:
            try:
                seg.schema = pa.ipc.read_schema(pa.py_buffer(payload))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                problems.append(f"unreadable schema: {exc}")
        elif seg.schema is None:
            problems.append(f"records at byte {pos} without a readable schema")
        else:
            seg.batches.append(Batch(seq, count, pos + HEADER_SIZE, length, crc))
        pos = end
    if pos < len(data):
        problems.append(f"{len(data) - pos} stray bytes at the end")
    if problems:
        log.warning("inference log store: %s is damaged (%s); kept %d intact batches",
                    path, "; ".join(problems[:5]), len(seg.batches))
    seg.clean = not problems and seg.schema is not None and bool(seg.batches)
    return seg


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
