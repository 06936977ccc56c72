"""The engine's body codecs: JSON built column-wise must equal what a plain row-by-row encoder would write."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.codecs import ARROW_FILE, ARROW_STREAM, PANDAS_RECORDS, decode_request, negotiate, py_float, records_json
from engine.codecs.numbers import dump as _dump
from engine.limits import Limits
from joey.errors import (
    BadColumn,
    DuplicateColumn,
    MalformedBody,
    NoRows,
    NotAcceptable,
    OverLimit,
    UnsupportedMediaType,
)


def tokens(arr: np.ndarray) -> list[bytes]:
    return _dump(arr).to_pybytes()[1:-1].split(b",")


def test_seed_values_print_like_the_seeds():
    x = np.array([1.0094898, -1.9073486e-06, 0.99300325, 0.0010916889], np.float32)
    assert _dump(x).to_pybytes() == b"[1.0094898,-1.9073486e-06,0.99300325,0.0010916889]"


@pytest.mark.parametrize("value, text", [
    (1.0, b"1.0"), (0.0, b"0.0"), (-0.0, b"-0.0"), (1e-4, b"0.0001"), (1.5e-5, b"1.5e-05"), (1e-7, b"1e-07"),
    (1.5e14, b"150000000000000.0"), (1e16, b"1e+16"), (3.4e38, b"3.4e+38"), (1e-45, b"1e-45"),
    (float("nan"), b"null"), (float("inf"), b"null"),
])
def test_float32_layout_is_pythons(value, text):
    assert tokens(np.array([value, 0.5], np.float32))[0] == text


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 300), elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_float64_text_is_pythons_repr(values):
    expected = [json.dumps(v).encode() if np.isfinite(v) else b"null" for v in values.tolist()]
    assert tokens(values) == expected


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 300), elements=st.floats(width=32)))
def test_float32_text_is_shortest_and_reads_back(values):
    for tok, v in zip(tokens(values), values):
        if not np.isfinite(v):
            assert tok == b"null"
            continue
        assert np.float32(float(tok)) == v
        assert tok == py_float(v)
        digits = tok.split(b"e")[0].lstrip(b"-").replace(b".", b"").strip(b"0")
        assert len(digits) <= len(np.format_float_positional(v, unique=True).replace(".", "").strip("-0") or "0")


def _reference_records(table: pa.Table) -> list[dict]:
    """The slow, obvious encoding the fast one must match."""
    out = []
    for row in table.to_pylist():
        rec: dict = {}
        for name, value in row.items():
            group, dot, key = name.partition(".")
            if dot:
                rec.setdefault(group, {})[key] = value
            else:
                rec[group] = value
        out.append(rec)
    return out


def _varied_table() -> pa.Table:
    return pa.table({
        "time": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "in.ints": pa.array([1, None, -3, 2**40, 0], pa.int64()),
        "in.flags": pa.array([True, False, None, True, False]),
        "in.text": pa.array(['plain', 'quo"te', "new\nline", None, "ünï©ødé ✓"]),
        "in.lists": pa.array([[1.5, 2.5], None, [], [3.0], [0.25, None]], pa.list_(pa.float64())),
        "in.nested": pa.array([[[1, 2], [3]], [], None, [[4]], [[], [5, 6]]], pa.list_(pa.list_(pa.int32()))),
        "in.uniform": pa.array([[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]], pa.list_(pa.int16())),
        "in.fixed": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(15, dtype=np.float64)), 3),
        "in.dict": pa.array(["a", "b", "a", None, "a"]).dictionary_encode(),
        "in.struct": pa.array([{"k": 1}, {"k": 2}, None, {"k": 4}, {"k": 5}]),
        "out.variable": pa.array([[0.5], [1.5], [2.5], [3.5], [4.5]], pa.list_(pa.float64())),
        "anomaly.count": pa.array([0, 1, 0, 2, 0], pa.int32()),
        "metadata.partition": pa.array(["edge-1"] * 5),
        "metadata.elapsed": pa.array([[10, 20]] * 5, pa.list_(pa.int64())),
        "metadata.dropped": pa.array([[]] * 5, pa.list_(pa.string())),
    })


def test_records_match_a_row_by_row_encoding():
    table = _varied_table()
    assert json.loads(records_json(table)) == _reference_records(table)


def test_sliced_and_chunked_tables_encode_their_own_rows():
    table = _varied_table()
    part = table.slice(1, 3)
    assert json.loads(records_json(part)) == _reference_records(part)
    chunked = pa.concat_tables([table.slice(0, 2), table.slice(2)])
    assert json.loads(records_json(chunked)) == _reference_records(table)


def test_empty_and_single_row_tables():
    assert records_json(_varied_table().slice(0, 0)) == b"[]"
    one = _varied_table().slice(4, 1)
    assert json.loads(records_json(one)) == _reference_records(one)


def test_decode_formats_give_the_same_table():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    table = pa.table({"tensor": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 3)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    from_stream = decode_request(sink.getvalue().to_pybytes(), ARROW_STREAM)
    from_json = decode_request(json.dumps([{"tensor": r} for r in x.tolist()]).encode(), PANDAS_RECORDS)
    assert from_stream.equals(table)
    assert from_json.column("tensor").to_pylist() == x.tolist()


@pytest.mark.parametrize("body, content_type, error", [
    (b"", ARROW_FILE, MalformedBody),
    (b"[]", "application/json", NoRows),
    (b"[1, 2]", "application/json", MalformedBody),
    (b"{}", "application/json; format=pandas-split", UnsupportedMediaType),
    (b"x", None, UnsupportedMediaType),
])
def test_decode_errors(body, content_type, error):
    with pytest.raises(error):
        decode_request(body, content_type)


@pytest.mark.parametrize("accept, kind", [
    (None, PANDAS_RECORDS), ("", PANDAS_RECORDS), ("*/*", PANDAS_RECORDS), ("application/json", PANDAS_RECORDS),
    ("application/json; format=pandas-records", PANDAS_RECORDS), (ARROW_FILE, ARROW_FILE),
    (f"text/html, {ARROW_STREAM};q=0.9, */*;q=0.1", ARROW_STREAM),
    (f"{PANDAS_RECORDS};q=0.5, {ARROW_FILE}", ARROW_FILE),
])
def test_negotiate(accept, kind):
    assert negotiate(accept) == kind


def test_negotiate_refuses_what_it_cannot_write():
    with pytest.raises(NotAcceptable):
        negotiate("text/csv")
    with pytest.raises(NotAcceptable):
        negotiate(f"{ARROW_FILE};q=0")


# ------------------------------------------------------------------------------------- shape bounds (issue 14)

SMALL = Limits(max_rows=12, max_columns=6, max_cells=40)
_values = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False), st.text("ab", max_size=3),
                    st.none(), st.lists(st.integers(0, 9), max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from([f"k{i}" for i in range(10)]), _values, max_size=8),
                min_size=1, max_size=20))
def test_records_are_decoded_within_the_shape_bounds_or_refused_naming_one(rows):
    """Rows, keys per row, distinct keys and rows x keys are bounded; within the bounds every record and key
    comes back, each column typed as one (or refused as a bad column)."""
    keys = {k for row in rows for k in row}
    over = (len(rows) > SMALL.max_rows or max(map(len, rows)) > SMALL.max_columns
            or len(keys) > SMALL.max_columns or len(rows) * len(keys) > SMALL.max_cells)
    body = json.dumps(rows).encode()
    try:
        table = decode_request(body, PANDAS_RECORDS, SMALL)
    except OverLimit as e:
        assert over, e
        assert any(v in e.one_line() for v in ("JOEY_MAX_ROWS", "JOEY_MAX_COLUMNS", "JOEY_MAX_CELLS"))
        return
    except BadColumn:
        assert not over
        return
    assert not over
    assert set(table.column_names) == keys
    assert table.num_rows == (len(rows) if keys else 0)   # records without keys make a table of no columns


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"]), min_size=1, max_size=9),
       st.integers(0, 15))
def test_arrow_columns_are_bounded_and_unique(names, rows):
    table = pa.Table.from_arrays([pa.array(range(rows))] * len(names), names=names)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    body = sink.getvalue().to_pybytes()
    try:
        decoded = decode_request(body, ARROW_FILE, SMALL)
    except OverLimit:
        assert len(names) > SMALL.max_columns or rows > SMALL.max_rows or rows * len(names) > SMALL.max_cells
        return
    except DuplicateColumn:
        assert len(set(names)) < len(names) <= SMALL.max_columns
        return
    except NoRows:
        assert rows == 0
        return
    assert len(set(names)) == len(names) and decoded.num_rows == rows
