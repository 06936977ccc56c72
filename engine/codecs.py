"""Request and response bodies: Arrow IPC (file and stream) and pandas-records JSON, both ways.

Results are one flat Arrow table whose dotted column names (`in.tensor`, `out.variable`, `anomaly.count`,
`metadata.elapsed`, ...) become the nested objects of a pandas-records JSON record. The JSON is built column by
column, never row by row: each numeric column is serialised in one orjson call over its numpy values, the text is
cut into per-row spans at the separators, and Arrow's string kernels glue the spans and the constant parts
(key names, metadata repeated on every row) into records. Floats print as their shortest round-trip form in
their own width (a float32 1.0094898 stays 1.0094898, not 1.0094897747039795), laid out like Python's repr.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from joey.errors import BadColumn, MalformedBody, NoRows, NotAcceptable, UnsupportedMediaType

ARROW_FILE = "application/vnd.apache.arrow.file"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON = "application/json"
PANDAS_RECORDS = "application/json; format=pandas-records"

REQUEST_TYPES = (ARROW_FILE, ARROW_STREAM, PANDAS_RECORDS, JSON)
RESPONSE_TYPES = (PANDAS_RECORDS, ARROW_FILE, ARROW_STREAM)


@dataclass(frozen=True)
class MediaType:
    essence: str            # type/subtype, lower case
    format: str | None      # the `format=` parameter of JSON types

    @classmethod
    def parse(cls, header: str) -> "MediaType":
        main, *params = header.split(";")
        fmt = None
        for p in params:
            key, _, value = p.partition("=")
            if key.strip().lower() == "format":
                fmt = value.strip().strip('"').lower()
        return cls(main.strip().lower(), fmt)

    @property
    def kind(self) -> str | None:
        """ARROW_FILE, ARROW_STREAM or PANDAS_RECORDS when this is one of them (JSON means records)."""
        if self.essence in (ARROW_FILE, ARROW_STREAM):
            return self.essence
        if self.essence == JSON and self.format in (None, "pandas-records"):
            return PANDAS_RECORDS
        return None


# ------------------------------------------------------------------------------------------------ requests

def decode_request(body: bytes, content_type: str | None) -> pa.Table:
    """The request as an Arrow table. Content-Type picks the reader; JSON is a list of records."""
    kind = MediaType.parse(content_type or "").kind
    if kind is None:
        raise UnsupportedMediaType(content_type or "(none)", REQUEST_TYPES)
    if kind == PANDAS_RECORDS:
        return records_table(_json(body))
    try:
        buf = pa.py_buffer(body)
        reader = ipc.open_file(buf) if kind == ARROW_FILE else ipc.open_stream(buf)
        table = reader.read_all()
        # Offsets pointing outside their buffers pass read_all and crash the process on first use.
        table.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as e:
        other = ARROW_STREAM if kind == ARROW_FILE else ARROW_FILE
        raise MalformedBody(f"Arrow {'file' if kind == ARROW_FILE else 'stream'}",
                            f"{_first_line(e)} (is it an {other} body?)") from None
    if table.num_rows == 0:
        raise NoRows()
    return table


def _json(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise MalformedBody("JSON", str(e)) from None


def records_table(rows) -> pa.Table:
    """pandas-records (`[{"tensor": [...]}, ...]`) as a table; a key missing from a record is a null there."""
    if not isinstance(rows, list):
        raise MalformedBody("JSON", f"expected an array of records like [{{\"tensor\": [...]}}], "
                                    f"got {type(rows).__name__}")
    if not rows:
        raise NoRows()
    names: dict[str, None] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise MalformedBody("JSON", f"record {i} is {type(row).__name__}, expected an object")
        names.update(dict.fromkeys(row))
    columns = {}
    for name in names:
        try:
            columns[name] = pa.array([row.get(name) for row in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
            raise BadColumn(name, f"values of mixed types or out of range ({_first_line(e)})") from None
    return pa.table(columns)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


# ------------------------------------------------------------------------------------------------ responses

def negotiate(accept: str | None) -> str:
    """The response type for an Accept header: the first supported entry by quality, JSON by default."""
    if not accept or not accept.strip():
        return PANDAS_RECORDS
    ranked = []
    for i, entry in enumerate(accept.split(",")):
        mt = MediaType.parse(entry)
        q = 1.0
        for p in entry.split(";")[1:]:
            key, _, value = p.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranked.append((-q, i, mt))
    for neg_q, _, mt in sorted(ranked, key=lambda r: r[:2]):
        if neg_q >= 0:
            continue
        if mt.kind is not None:
            return mt.kind
        if mt.essence in ("*/*", "application/*"):
            return PANDAS_RECORDS
    raise NotAcceptable(accept, RESPONSE_TYPES)


def encode(table: pa.Table, kind: str) -> bytes | memoryview:
    if kind == PANDAS_RECORDS:
        return records_json(table)
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
    n = table.num_rows
    if n == 0:
        return b"[]"
    column = _row_texts if n <= SMALL_TABLE_ROWS else _column
    groups: dict[str, list[tuple[str | None, pa.ChunkedArray]]] = {}
    for name, col in zip(table.column_names, table.columns):
        group, dot, key = name.partition(".")
        groups.setdefault(group, []).append((key if dot else None, col))
    parts: list = ["{"]
    for g, (group, members) in enumerate(groups.items()):
        parts.append(("," if g else "") + _key(group) + ":")
        nested = any(key is not None for key, _ in members)
        if nested:
            parts.append("{")
        for m, (key, col) in enumerate(members):
            if nested:
                parts.append(("," if m else "") + _key(key if key is not None else ""))
                parts.append(":")
            parts.append(column(col))
        if nested:
            parts.append("}")
    parts.append("},")
    if n <= SMALL_TABLE_ROWS:
        return _join_rows(parts, n)
    joined = _concat(parts, n)
    offsets = np.frombuffer(joined.buffers()[1], np.int32, n + 1, joined.offset * 4)
    data = memoryview(joined.buffers()[2])[offsets[0]:offsets[-1] - 1]   # without the last record's comma
    return b"".join((b"[", data, b"]"))


def _row_texts(col: pa.ChunkedArray) -> list[bytes]:
    """The JSON text of each row of a (small) column, as _rows writes it, without Arrow kernels where the
    layout allows: numbers from one _dump split at their separators, strings by orjson."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    t = arr.type
    if arr.null_count == 0:
        if _is_primitive(t):
            return _dump(arr.to_numpy(zero_copy_only=False)).to_pybytes()[1:-1].split(b",")
        if _is_string(t):
            return [orjson.dumps(v) for v in arr.to_pylist()]
        if _is_list(t):
            offsets, values = _list_parts(arr)
            widths = np.diff(offsets)
            if not widths.any():
                return [b"[]"] * len(arr)
            if _is_primitive(values.type) and values.null_count == 0 and (widths == widths[0]).all():
                flat = values.slice(offsets[0], offsets[-1] - offsets[0]).to_numpy(zero_copy_only=False)
                # `[[r0],[r1],...]`: a bracket never occurs inside a number
                rows = _dump(flat.reshape(-1, int(widths[0]))).to_pybytes()[2:-2].split(b"],[")
                return [b"[" + r + b"]" for r in rows]
    return [text.encode() for text in _rows(arr).to_pylist()]


def _join_rows(parts: list, n: int) -> bytes:
    """Records from literal strings and per-row text lists, row by row."""
    merged: list = []
    for p in parts:
        if isinstance(p, str):
            p = p.encode()
            if merged and isinstance(merged[-1], bytes):
                merged[-1] += p
                continue
        merged.append(p)
    records = b"".join(b"".join(p if isinstance(p, bytes) else p[i] for p in merged) for i in range(n))
    return b"[" + records[:-1] + b"]"


def _key(name: str) -> str:
    return orjson.dumps(name).decode()


def _concat(parts: list[str | pa.Array], n: int) -> pa.Array:
    """Row-wise concatenation of literal strings and per-row string arrays."""
    merged: list[str | pa.Array] = []
    for p in parts:
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
            out = _dump_matrix(values.slice(offsets[0], offsets[-1] - offsets[0]), int(widths[0]))
        elif numeric:
            text, bounds = _dump_numbers(values)
            # Each non-empty row's span ends in the separator after its last value: cut it off.
            body = pc.utf8_slice_codeunits(_spans(bounds[offsets], text), 0, -1)
            out = pc.binary_join_element_wise("[", body, "]", "")
        else:
            body = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _rows(values)), ",")
            out = pc.binary_join_element_wise("[", body, "]", "")
    elif _is_primitive(t):
        filled = arr.fill_null(False if pa.types.is_boolean(t) else 0) if arr.null_count else arr
        text, bounds = _dump_numbers(filled)
        out = pc.utf8_slice_codeunits(_spans(bounds, text), 0, -1)
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


def _spans(bounds: np.ndarray, text: pa.Buffer) -> pa.Array:
    """A string array over `text` whose element i is text[bounds[i]:bounds[i+1]] (no copy of the text)."""
    offsets = np.ascontiguousarray(bounds, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), len(offsets) - 1, [None, pa.py_buffer(offsets), text])


def _dump(arr: np.ndarray) -> pa.Buffer:
    """JSON text of a numeric array (`[v0,v1,...]`, or nested for 2-D), floats laid out as Python's repr.

    orjson prints the shortest digits, like repr, and the same layout for 1e-4 <= |x| < 1e13. Outside that
    band (orjson: 0.0000019, 1.5e-7, 1.5e+14; repr: 1.9e-06, 1.5e-07, 150000000000000.0) values are dumped as
    null instead, and each null (the only JSON text with an `n` in it) is then replaced by the value's repr.
    """
    arr = np.ascontiguousarray(arr)
    if arr.dtype.kind != "f":
        return pa.py_buffer(orjson.dumps(arr, option=orjson.OPT_SERIALIZE_NUMPY))
    magnitude = np.abs(arr)
    special = ~((magnitude >= 1e-4) & (magnitude < 1e13)) & (arr != 0)   # nan and inf included
    if not special.any():
        return pa.py_buffer(orjson.dumps(arr, option=orjson.OPT_SERIALIZE_NUMPY))
    text = orjson.dumps(np.where(special, np.nan, arr).astype(arr.dtype, copy=False),
                        option=orjson.OPT_SERIALIZE_NUMPY)
    nulls = np.flatnonzero(np.frombuffer(text, np.uint8) == ord("n")).astype(np.int32)
    # Pieces alternate: text before the first null, a null, text up to the next null, ...
    bounds = np.empty(2 * len(nulls) + 2, np.int32)
    bounds[0], bounds[-1] = 0, len(text)
    bounds[1:-1:2], bounds[2:-1:2] = nulls, nulls + 4
    pieces = _spans(bounds, pa.py_buffer(text))
    is_null = np.zeros(len(pieces), bool)
    is_null[1::2] = True
    spliced = pc.replace_with_mask(pieces, pa.array(is_null), _repr_floats(arr[special]))
    offsets = np.frombuffer(spliced.buffers()[1], np.int32, len(spliced) + 1, spliced.offset * 4)
    return spliced.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


_POSITIONAL_SMALL = r"^(?P<sign>-?)0\.(?P<zeros>0*)(?P<first>[1-9])(?P<rest>[0-9]*)$"
_SCIENTIFIC = r"^(?P<sign>-?)(?P<first>[1-9])(?:\.(?P<rest>[0-9]+))?e(?P<exp>[-+][0-9]+)$"


def _repr_floats(values: np.ndarray) -> pa.Array:
    """repr-style text of floats outside orjson's matching band, vectorised (there may be thousands)."""
    texts = _split_values(pa.py_buffer(orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)), len(values))
    positional = pc.extract_regex(texts, _POSITIONAL_SMALL)
    scientific = pc.extract_regex(texts, _SCIENTIFIC)
    is_positional = positional.is_valid()

    def field(name: str) -> pa.Array:
        return pc.if_else(is_positional, positional.field(name), scientific.field(name))

    exponent = pc.if_else(is_positional,
                          pc.binary_join_element_wise(
                              "-", pc.cast(pc.add(pc.utf8_length(positional.field("zeros")), 1), pa.string()), ""),
                          scientific.field("exp"))
    # repr writes at least two exponent digits: e-07, e+16
    exponent = pc.binary_join_element_wise(pc.utf8_slice_codeunits(exponent, 0, 1),
                                           pc.utf8_lpad(pc.utf8_slice_codeunits(exponent, 1), 2, "0"), "")
    rest = field("rest")
    dot = pc.if_else(pc.equal(pc.utf8_length(rest), 0), "", ".")
    out = pc.binary_join_element_wise(field("sign"), field("first"), dot, rest, "e", exponent, "")
    # Left to repr one by one: nan/inf (null) and float32 in [1e13, 1e16), which repr writes positionally.
    matched = (is_positional.to_numpy(zero_copy_only=False) | scientific.is_valid().to_numpy(zero_copy_only=False))
    magnitude = np.abs(values)
    left = ~matched | ~np.isfinite(values) | ((magnitude >= 1e13) & (magnitude < 1e16))
    if left.any():
        out = pc.replace_with_mask(out, pa.array(left),
                                   pa.array([py_float(x).decode() for x in values[left]], pa.string()))
    return out


def _split_values(text: pa.Buffer, count: int) -> pa.Array:
    """The value texts of a flat JSON array of numbers, one string each."""
    return pc.utf8_slice_codeunits(_spans(_value_bounds(text, count), text), 0, -1)


def _value_bounds(text: pa.Buffer, count: int) -> np.ndarray:
    """Where each value of the flat JSON array `[v0,v1,...]` starts, then the text's length: value i with the
    one character after it (`,` or the closing `]`) is text[b[i]:b[i+1]].

    A comma never occurs inside a number, `true`, `false` or `null`, so the separators are the commas.
    """
    commas = np.flatnonzero(np.frombuffer(text, np.uint8) == ord(","))
    bounds = np.empty(count + 1, np.int64)
    bounds[0] = 1
    bounds[1:-1] = commas + 1
    bounds[-1] = len(text)
    return bounds


def py_float(x: np.floating) -> bytes:
    """Python's repr of a float applied to the shortest digits of its own width; null for nan and inf."""
    if not np.isfinite(x):
        return b"null"
    sci = np.format_float_scientific(x, unique=True, exp_digits=2)
    mantissa, _, exponent = sci.partition("e")
    if -4 <= int(exponent) < 16:
        return np.format_float_positional(x, unique=True, trim="0").encode()
    return f"{mantissa.rstrip('.')}e{exponent}".encode()


def _dump_matrix(values: pa.Array, width: int) -> pa.Array:
    """Rows of `width` numbers each, as `[v,...]` texts, from one dump of the (rows, width) matrix.

    The dump reads `[[r0],[r1],...]`; a bracket never occurs inside a number, so the row starts are the
    opening brackets after the first, and each row's span ends in one extra character (`,` or `]`).
    """
    text = _dump(values.to_numpy(zero_copy_only=False).reshape(-1, width))
    starts = np.flatnonzero(np.frombuffer(text, np.uint8) == ord("["))
    starts[0] = len(text)   # the outer bracket is no row start; reused as the end of the last row
    return pc.utf8_slice_codeunits(_spans(np.roll(starts, -1), text), 0, -1)


def _dump_numbers(values: pa.Array) -> tuple[pa.Buffer, np.ndarray]:
    """JSON text `[v0,v1,...]` of a numeric array and its _value_bounds."""
    arr = values.to_numpy(zero_copy_only=False)
    text = _dump(arr)
    return text, _value_bounds(text, len(arr))
