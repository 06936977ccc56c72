"""Answer bodies: a flat result table as pandas-records JSON (built column by column) or Arrow IPC.

A dotted column name (`in.tensor`, `out.variable`, `anomaly.count`, `metadata.elapsed`, ...) becomes a key of
the nested object of a record. Each numeric column is serialised in one orjson call over its numpy values
(numbers.py), the text is cut into per-row spans at the separators, and Arrow's string kernels glue the spans
and the constant parts (key names, metadata repeated on every row) into records; there is no per-row Python
object. Floats print as their shortest round-trip form in their own width (a float32 1.0094898 stays
1.0094898, not 1.0094897747039795), laid out like Python's repr.
"""
from __future__ import annotations

import functools

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from engine.codecs.media import ARROW_FILE, PANDAS_RECORDS
from engine.codecs.numbers import dump, dump_matrix, dump_numbers, spans


def encode(table: pa.Table, kind: str) -> bytes | memoryview:
    if kind == PANDAS_RECORDS:
        return records_json(table)
    return _arrow(table, kind)


# A JSON answer of more rows than this is printed this many rows at a time: each slice's transient copies (the
# numbers' text, its spans, the glued records) are a quarter of a 10k-row answer's, and the slices are sent as
# they are, never joined into one buffer. The kernels' fixed cost per slice is what bounds it from below:
# against one piece, a 10k-row ccfraud answer took ~10 % more CPU in slices of 2,500 rows, ~40 % in 1,000.
CHUNK_ROWS = 2500


def encode_chunks(table: pa.Table, kind: str) -> list[bytes | memoryview]:
    """`encode(table, kind)` as a list of buffers whose concatenation it is (JSON: a few per CHUNK_ROWS rows)."""
    if kind != PANDAS_RECORDS or table.num_rows <= CHUNK_ROWS:
        return [encode(table, kind)]
    chunks: list[bytes | memoryview] = []
    for start in range(0, table.num_rows, CHUNK_ROWS):
        chunks += [b"," if start else b"[", _records_body(table.slice(start, CHUNK_ROWS))]
    chunks.append(b"]")
    return chunks


def _arrow(table: pa.Table, kind: str) -> memoryview:
    sink = pa.BufferOutputStream()
    writer = ipc.new_file if kind == ARROW_FILE else ipc.new_stream
    with writer(sink, table.schema) as w:
        w.write_table(table)
    return memoryview(sink.getvalue())


# Up to this many rows the Arrow kernels' fixed cost per call outweighs their speed: a small table's records are
# glued in Python from each column's per-row texts instead, with the same bytes (measured on the ccfraud
# result: 1 row 76 us vs 504 us, 64 rows 253 vs 533 us, even at ~128 rows, slower past that).
SMALL_TABLE_ROWS = 64


def records_json(table: pa.Table) -> bytes:
    """pandas-records JSON of a flat table: a column `a.b` is key `b` of the object at key `a`."""
    if table.num_rows == 0:
        return b"[]"
    return b"".join((b"[", _records_body(table), b"]"))


def _records_body(table: pa.Table) -> bytes | memoryview:
    """The records of a table with at least one row, comma-separated, without the enclosing brackets."""
    n = table.num_rows
    column = _row_texts if n <= SMALL_TABLE_ROWS else _column
    columns = table.columns
    parts = [p if isinstance(p, str) else column(columns[p]) for p in _layout(tuple(table.column_names))]
    if n <= SMALL_TABLE_ROWS:
        return _join_rows(parts, n)
    joined = _concat(parts, n)
    offsets = np.frombuffer(joined.buffers()[1], np.int32, n + 1, joined.offset * 4)
    return memoryview(joined.buffers()[2])[offsets[0]:offsets[-1] - 1]   # without the last record's comma


@functools.lru_cache(maxsize=256)
def _layout(names: tuple[str, ...]) -> tuple[str | int, ...]:
    """What a record is made of, by the table's column names: the constant text (keys, braces, the comma
    after the record) as merged literals, and the position of each column whose value goes in between. A
    pipeline's answers all share one, so it is worked out once, not per request."""
    groups: dict[str, list[tuple[str | None, int]]] = {}
    for i, name in enumerate(names):
        group, dot, key = name.partition(".")
        groups.setdefault(group, []).append((key if dot else None, i))
    parts: list[str | int] = ["{"]
    for g, (group, members) in enumerate(groups.items()):
        parts.append(("," if g else "") + _key(group) + ":")
        nested = any(key is not None for key, _ in members)
        if nested:
            parts.append("{")
        for m, (key, i) in enumerate(members):
            if nested:
                parts.append(("," if m else "") + _key(key if key is not None else "") + ":")
            parts.append(i)
        if nested:
            parts.append("}")
    parts.append("},")
    merged: list[str | int] = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    return tuple(merged)


def _row_texts(col: pa.ChunkedArray) -> list[bytes]:
    """The JSON text of each row of a (small) column, as _rows writes it, without Arrow kernels where the
    layout allows: numbers from one _dump split at their separators, strings by orjson."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if arr.null_count == 0:
        kind = _kind(arr.type)
        if kind == "number":
            return dump(arr.to_numpy(zero_copy_only=False)).to_pybytes()[1:-1].split(b",")
        if kind == "string":
            return [orjson.dumps(v) for v in arr.to_pylist()]
        if kind == "list":
            offsets, values = _list_parts(arr)
            widths = np.diff(offsets)
            if not widths.any():
                return [b"[]"] * len(arr)
            if _kind(values.type) == "number" and values.null_count == 0 and (widths == widths[0]).all():
                flat = values.slice(offsets[0], offsets[-1] - offsets[0]).to_numpy(zero_copy_only=False)
                # `[[r0],[r1],...]`: a bracket never occurs inside a number
                rows = dump(flat.reshape(-1, int(widths[0]))).to_pybytes()[2:-2].split(b"],[")
                return [b"[" + r + b"]" for r in rows]
    return [text.encode() for text in _rows(arr).to_pylist()]


def _join_rows(parts: list, n: int) -> bytes:
    """Records from literal strings and per-row text lists, row by row, comma-separated."""
    merged = [p.encode() if isinstance(p, str) else p for p in parts]
    records = b"".join(b"".join(p if isinstance(p, bytes) else p[i] for p in merged) for i in range(n))
    return records[:-1]


def _key(name: str) -> str:
    return orjson.dumps(name).decode()


def _concat(parts: list[str | pa.Array], n: int) -> pa.Array:
    """Row-wise concatenation of literal strings and per-row string arrays."""
    merged: list[str | pa.Array] = []
    for p in parts:   # a column may have become a literal (one value on every row): merge it with its neighbours
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    if not any(isinstance(p, pa.Array) for p in merged):
        return pa.array(["".join(merged)] * n, pa.string())
    return pc.binary_join_element_wise(*merged, "")


def _column(col: pa.ChunkedArray) -> str | pa.Array:
    """The JSON text of each row of a column, or one literal when every row holds the same value."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if len(arr) > 1 and arr.null_count == 0 and (_is_primitive(arr.type) or _is_string(arr.type)):
        if pc.count_distinct(arr).as_py() == 1:
            return _rows(arr.slice(0, 1))[0].as_py()
    return _rows(arr)


@functools.lru_cache(maxsize=256)
def _kind(t: pa.DataType) -> str:
    """"number", "string", "list" or "other": what _row_texts asks of a column's type on every request, once."""
    return "number" if _is_primitive(t) else "string" if _is_string(t) else "list" if _is_list(t) else "other"


def _is_primitive(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _rows(arr: pa.Array) -> pa.Array:
    """A string array holding the JSON text of every row of `arr` ("null" for nulls)."""
    t = arr.type
    if _is_list(t):
        offsets, values = _list_parts(arr)
        widths = np.diff(offsets)
        numeric = _is_primitive(values.type) and values.null_count == 0
        if numeric and len(widths) and widths[0] > 0 and (widths == widths[0]).all():
            out = dump_matrix(values.slice(offsets[0], offsets[-1] - offsets[0]), int(widths[0]))
        elif numeric:
            text, bounds = dump_numbers(values)
            # Each non-empty row's span ends in the separator after its last value: cut it off.
            body = pc.utf8_slice_codeunits(spans(bounds[offsets], text), 0, -1)
            out = pc.binary_join_element_wise("[", body, "]", "")
        else:
            body = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _rows(values)), ",")
            out = pc.binary_join_element_wise("[", body, "]", "")
    elif _is_primitive(t):
        filled = arr.fill_null(False if pa.types.is_boolean(t) else 0) if arr.null_count else arr
        text, bounds = dump_numbers(filled)
        out = pc.utf8_slice_codeunits(spans(bounds, text), 0, -1)
    elif pa.types.is_dictionary(t):
        out = _rows(arr.dictionary).take(arr.indices)
    elif _is_string(t):
        encoded = arr.dictionary_encode()
        texts = pa.array([orjson.dumps(v).decode() for v in encoded.dictionary.to_pylist()], pa.string())
        out = texts.take(encoded.indices)
    else:  # structs, maps, dates...: rare in inference inputs; per-row is fine here
        out = pa.array([orjson.dumps(v, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
                        for v in arr.to_pylist()], pa.string())
    if arr.null_count:
        out = pc.if_else(arr.is_valid(), out, "null")
    return out


def _list_parts(arr: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(offsets of every row into `values`, values) for any list type, slices included."""
    if pa.types.is_fixed_size_list(arr.type):
        size = arr.type.list_size
        return (np.arange(len(arr) + 1, dtype=np.int64) + arr.offset) * size, arr.values
    return arr.offsets.to_numpy().astype(np.int64, copy=False), arr.values



def json_texts(arr: pa.Array) -> pa.Array:
    """The JSON text of each value of `arr`, nulls kept null: how the log store reads a column whose types
    differ between records beyond widening."""
    out = _rows(arr)
    return pc.if_else(arr.is_valid(), out, pa.scalar(None, pa.string())) if arr.null_count else out
