"""Request bodies as one Arrow table: an Arrow IPC file or stream, or pandas-records JSON.

Every shape bound of engine/limits.py is checked before the work it bounds: the JSON body's size and its
object count before it is parsed, each record's keys before they are merged, the union of keys and the
rows x columns product before any column is built; an Arrow body's width and names from its schema, its
rows batch by batch as they are read.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

from engine.codecs.media import ARROW_FILE, ARROW_STREAM, PANDAS_RECORDS, REQUEST_TYPES, MediaType
from engine.limits import Limits, current, variable
from joey.errors import (
    BadColumn,
    DuplicateColumn,
    MalformedBody,
    NoRows,
    OverLimit,
    PayloadTooLarge,
    UnsupportedMediaType,
)


def decode_request(body: bytes, content_type: str | None, limits: Limits | None = None) -> pa.Table:
    """The request as an Arrow table. Content-Type picks the reader; JSON is a list of records."""
    limits = limits or current()
    kind = MediaType.parse(content_type or "").kind
    if kind is None:
        raise UnsupportedMediaType(content_type or "(none)", REQUEST_TYPES)
    if kind == PANDAS_RECORDS:
        return records_table(_json(body, limits), limits)
    table = _arrow(body, kind, limits)
    if table.num_rows == 0:
        raise NoRows()
    return table


def _arrow(body: bytes, kind: str, limits: Limits) -> pa.Table:
    try:
        buf = pa.py_buffer(body)
        if kind == ARROW_FILE:
            file = ipc.open_file(buf)
            schema = _checked_schema(file.schema, limits)
            batches = (file.get_batch(i) for i in range(file.num_record_batches))
        else:
            stream = ipc.open_stream(buf)
            schema = _checked_schema(stream.schema, limits)
            batches = iter(stream)
        kept, rows = [], 0
        for batch in batches:
            # An empty batch counts as a row: a body of a million of them costs a million objects too.
            rows += max(1, batch.num_rows)
            _at_most(rows, limits, "max_rows", "rows")
            kept.append(batch)
        _at_most(rows * len(schema), limits, "max_cells", "cells (rows x columns)")
        table = pa.Table.from_batches(kept, schema)
        # Offsets pointing outside their buffers pass reading and crash the process on first use.
        table.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as e:
        other = ARROW_STREAM if kind == ARROW_FILE else ARROW_FILE
        raise MalformedBody(f"Arrow {'file' if kind == ARROW_FILE else 'stream'}",
                            f"{_first_line(e)} (is it an {other} body?)") from None
    return table


def _checked_schema(schema: pa.Schema, limits: Limits) -> pa.Schema:
    _at_most(len(schema), limits, "max_columns", "columns")
    if len(set(schema.names)) != len(schema.names):
        name, count = Counter(schema.names).most_common(1)[0]
        raise DuplicateColumn(name, count)
    return schema


def _json(body: bytes, limits: Limits) -> Any:
    if len(body) > limits.max_json_body:
        raise PayloadTooLarge.over_limit(limits.max_json_body, len(body), variable("max_json_body"))
    # Every record is an object, so the `{` bytes bound the records from above: a body of millions of tiny
    # records is refused before one of them is built (braces inside strings count too).
    _at_most(body.count(b"{"), limits, "max_rows", "records ('{' in the body)")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise MalformedBody("JSON", str(e)) from None


def records_table(rows: Any, limits: Limits | None = None) -> pa.Table:
    """pandas-records (`[{"tensor": [...]}, ...]`) as a table; a key missing from a record is a null there."""
    limits = limits or current()
    if not isinstance(rows, list):
        raise MalformedBody("JSON", f"expected an array of records like [{{\"tensor\": [...]}}], "
                                    f"got {type(rows).__name__}")
    if not rows:
        raise NoRows()
    _at_most(len(rows), limits, "max_rows", "records")
    names: dict[str, None] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise MalformedBody("JSON", f"record {i} is {type(row).__name__}, expected an object")
        _at_most(len(row), limits, "max_columns", f"keys in record {i}")
        if row.keys() - names.keys():
            names.update(dict.fromkeys(row))
            _at_most(len(names), limits, "max_columns", f"distinct keys (by record {i})")
    _at_most(len(rows) * len(names), limits, "max_cells", "cells (records x distinct keys)")
    return pa.table({name: _column(name, [row.get(name) for row in rows]) for name in names})


def _column(name: str, values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except OverflowError:
        # Integers past int64: uint64 where they all fit, else floats, as orjson reads those past uint64.
        for type_ in (pa.uint64(), pa.float64()):
            try:
                return pa.array(values, type_)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                continue
        raise BadColumn(name, "integers out of range") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise BadColumn(name, f"values of mixed types or out of range ({_first_line(e)})") from None


def _at_most(count: int, limits: Limits, name: str, what: str) -> None:
    limit = getattr(limits, name)
    if count > limit:
        raise OverLimit(what, limit, variable(name), f"{count}" if "by record" not in what else None)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
