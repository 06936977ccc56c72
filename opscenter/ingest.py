"""Log pages into the `logs` table: decode a page (Arrow IPC or JSON), keep each (edge, seq) once, write it.

Pages come as the Arrow IPC stream the engine builds from its log store (LOG_PAGE_MEDIA_TYPE; the edge and seq
range ride in the schema's metadata) or as JSON (joey.opswire.LogPage). Both become `Rows`: seqs, record times
and record JSON texts, built column by column for Arrow pages (opscenter/pagejson.py).

Dedup holds across replicas: on PostgreSQL each edge's pages are serialized by a transaction-scoped advisory
lock on the edge id, then only the seqs not yet stored are written (SQLite's one writer at a time gives the same;
its unique key stays as well). PostgreSQL writes with one COPY of text built by Arrow kernels, into the day's
partition of `logs` (made on demand, the next day's with it, under an advisory lock so replicas do not race);
SQLite with one executemany. Both run in the request's worker thread, off the event loop.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from joey.errors import BadRequest
from joey.opswire import ARROW_PAGE_KEYS, MAX_PAGE_COLUMNS, MAX_PAGE_RECORDS, LogPage
from opscenter import logrecords, pagejson

DAY_S = 86400
_COLUMNS = "pipeline_name, edge_id, partition, seq, time, record, received_at"
_PARTITION_LOCK = "joey.logs.partitions"


@dataclass(frozen=True)
class ArrowPage:
    """An Arrow page as decoded: the same fields as LogPage, the records as the store's flat table."""

    edge: str
    seq_start: int
    seq_end: int
    table: pa.Table

    @property
    def count(self) -> int:
        return self.table.num_rows


@dataclass(frozen=True)
class Rows:
    seqs: np.ndarray        # int64
    times: pa.Array         # int64, null where a record has no time
    records: pa.Array       # string: each record's JSON text, as stored


def decode_arrow(raw: bytes | bytearray) -> ArrowPage:
    """An Arrow IPC stream page: checked (UTF-8 included: PostgreSQL refuses invalid text) before any work per
    record."""
    try:
        reader = ipc.open_stream(pa.py_buffer(bytes(raw)))
        meta = {k.decode(): v.decode() for k, v in (reader.schema.metadata or {}).items()}
        if len(reader.schema) > MAX_PAGE_COLUMNS:
            raise BadRequest(f"Arrow page: {len(reader.schema)} columns; at most {MAX_PAGE_COLUMNS}")
        table = reader.read_all()
        table.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, OSError) as e:
        raise BadRequest(f"Arrow page: not a valid Arrow IPC stream ({str(e).splitlines()[0]})") from None
    missing = [k for k in ARROW_PAGE_KEYS if k not in meta]
    if missing:
        raise BadRequest(f"Arrow page: schema metadata lacks {', '.join(missing)}",
                         hint=f"the schema's metadata names the page: {', '.join(ARROW_PAGE_KEYS)}")
    if table.num_rows > MAX_PAGE_RECORDS:
        raise BadRequest(f"Arrow page: {table.num_rows} records; at most {MAX_PAGE_RECORDS} in one upload")
    try:
        start, end = int(meta["joey.seq_start"]), int(meta["joey.seq_end"])
    except ValueError:
        raise BadRequest("Arrow page: joey.seq_start and joey.seq_end must be integers") from None
    if not (0 <= start < 2**62 and 0 <= end < 2**62):
        raise BadRequest("Arrow page: joey.seq_start and joey.seq_end must be in 0..2**62-1")
    return ArrowPage(meta["joey.edge"], start, end, table)


def rows(page: LogPage | ArrowPage, edge_name: str) -> Rows:
    """The page's records as stored: metadata.partition is the edge's name whatever the edge wrote there."""
    if isinstance(page, ArrowPage):
        return _arrow_rows(page, edge_name)
    stamped = [logrecords.stamp(r, edge_name, i) for i, r in enumerate(page.records)]
    return Rows(np.arange(page.seq_start, page.seq_start + len(stamped), dtype=np.int64),
                pa.array([r.get("time") for r in stamped], pa.int64()),
                pa.array([json.dumps(r) for r in stamped], pa.string()))


def _arrow_rows(page: ArrowPage, edge_name: str) -> Rows:
    table = page.table
    n = table.num_rows
    times = pa.nulls(n, pa.int64())
    if "time" in table.column_names:
        column = table.column("time").combine_chunks()
        if not (pa.types.is_integer(column.type) or pa.types.is_null(column.type)):
            raise BadRequest(f"Arrow page: column time is {column.type}; expected epoch milliseconds as integers")
        try:
            times = column.cast(pa.int64())
        except pa.ArrowInvalid:
            raise BadRequest("Arrow page: column time holds values beyond int64") from None
    partition = pa.array([edge_name] * n, pa.string())
    where = table.schema.get_field_index("metadata.partition")
    table = table.set_column(where, "metadata.partition", partition) if where >= 0 else \
        table.append_column("metadata.partition", partition)
    texts = pagejson.record_texts(table)
    if texts is None:   # a shape pagejson does not write: the same records, one by one
        records = [logrecords.stamp(_nest(r), edge_name, i) for i, r in enumerate(page.table.to_pylist())]
        texts = pa.array([json.dumps(r) for r in records], pa.string())
    return Rows(np.arange(page.seq_start, page.seq_start + n, dtype=np.int64), times, texts)


def _nest(flat: dict) -> dict:
    record: dict = {}
    for name, value in flat.items():
        group, dot, key = name.partition(".")
        if dot:
            inner = record.setdefault(group, {})
            if not isinstance(inner, dict):
                raise BadRequest(f"Arrow page: columns {group} and {name} both name field {group}")
            inner[key] = value
        else:
            record[name] = value
    return record


def store(tx, pipeline: str, edge_id: str, edge_name: str, page: Rows, now: float) -> int:
    """Write the page's records not yet stored; how many were written."""
    if not len(page.seqs):
        return 0
    first, last = int(page.seqs[0]), int(page.seqs[-1])
    if tx.dialect == "postgresql":
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (edge_id,))
    present = [r["seq"] for r in tx.all("SELECT seq FROM logs WHERE edge_id = ? AND seq BETWEEN ? AND ?",
                                        (edge_id, first, last))]
    if present:
        keep = pa.array(~np.isin(page.seqs, np.asarray(present, dtype=np.int64)))
        page = Rows(page.seqs[keep.to_numpy(zero_copy_only=False)], page.times.filter(keep),
                    page.records.filter(keep))
    if not len(page.seqs):
        return 0
    if tx.dialect == "postgresql":
        tx.copy_in(f"COPY logs ({_COLUMNS}) FROM STDIN", _copy_text(pipeline, edge_id, edge_name, page, now))
    else:
        tx.execute_many(f"INSERT INTO logs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (edge_id, seq)"
                        " DO NOTHING",
                        list(zip([pipeline] * len(page.seqs), [edge_id] * len(page.seqs),
                                 [edge_name] * len(page.seqs), page.seqs.tolist(), page.times.to_pylist(),
                                 page.records.to_pylist(), [now] * len(page.seqs), strict=True)))
    return len(page.seqs)


def _copy_text(pipeline: str, edge_id: str, edge_name: str, page: Rows, now: float) -> pa.Buffer:
    """COPY's text format for the rows, every line built by Arrow kernels. Records are JSON, whose control
    characters are escaped already, so only backslashes need doubling; names are escaped once."""
    head = "\t".join(_copy_field(v) for v in (pipeline, edge_id, edge_name)) + "\t"
    lines = pc.binary_join_element_wise(
        head, pc.cast(pa.array(page.seqs), pa.string()), "\t",
        pc.fill_null(pc.cast(page.times, pa.string()), "\\N"), "\t",
        pc.replace_substring(page.records, "\\", "\\\\"), f"\t{now!r}\n", "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:lines.offset + len(lines) + 1]
    return lines.buffers()[2][int(offsets[0]):int(offsets[-1])]


def _copy_field(text: str) -> str:
    return (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r"))


class Partitions:
    """PostgreSQL's day partitions of `logs`, made before the first page of a day needs one. Remembers the
    days it has seen; a table made before partitioning (a plain `logs`) is written as it is."""

    def __init__(self, db):
        self.db = db
        self._known: set[int] = set()
        self._plain: bool | None = None
        self._lock = threading.Lock()

    def ensure(self, now: float) -> None:
        day = int(now // DAY_S)
        if self.db.dialect != "postgresql" or day in self._known or self._plain:
            return
        with self._lock, self.db.transaction() as tx:
            if self._plain is None:
                kind = tx.one("SELECT relkind FROM pg_class WHERE oid = to_regclass('logs')")
                self._plain = kind is None or kind["relkind"] != "p"
                if self._plain:
                    return
            tx.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (_PARTITION_LOCK,))
            for d in (day, day + 1):
                name = "logs_" + datetime.fromtimestamp(d * DAY_S, UTC).strftime("%Y%m%d")
                tx.execute(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF logs"
                           f" FOR VALUES FROM ({d * DAY_S}) TO ({(d + 1) * DAY_S})")
        self._known.add(day)
