"""Drift arithmetic for assays, in numpy over Arrow columns: one field's values out of stored log records, bin
edges from a baseline, bin proportions, and the score of a window against the baseline.

Bins (docs/ops.md, "Assays"): N bins between the baseline's minimum and maximum (`edges`, N+1 values: quantiles
of the baseline, or equal widths), plus an outlier bin on each side. Bin 0 holds v < edges[0]; bin k (1..N)
holds edges[k-1] <= v < edges[k], the last of them also v == edges[N]; bin N+1 holds v > edges[N].
Scores compare proportions: PSI = sum((w - b) * ln(w / b)) with both floored at EPSILON (an empty bin would
make it infinite); maxdiff = max |w - b|; sumdiff = sum |w - b|.
"""
from __future__ import annotations

import io
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from joey.errors import BadRequest

EPSILON = 1e-4
_PART = re.compile(r"\[(\d+)\]")


class FieldPath:
    """`out.variable[0]`: the keys down the record, then list indexes (one per level of nesting)."""

    def __init__(self, text: str):
        head, _, _ = text.partition("[")
        self.text = text
        self.keys = head.split(".")
        self.indexes = [int(i) for i in _PART.findall(text[len(head):])]

    def schema(self) -> pa.Schema:
        """Just what the reader needs: `time` and this field (lists of doubles per index), other keys ignored."""
        kind: pa.DataType = pa.float64()
        for _ in self.indexes:
            kind = pa.list_(kind)
        for key in reversed(self.keys[1:]):
            kind = pa.struct([(key, kind)])
        return pa.schema([("time", pa.int64()), (self.keys[0], kind)])

    def column(self, table: pa.Table) -> pa.Array:
        col = table.column(self.keys[0]).combine_chunks()
        for key in self.keys[1:]:
            col = pc.struct_field(col, key)
        for index in self.indexes:
            # A list shorter than the index yields null (that record has no such value), not an error.
            col = pc.list_element(pc.if_else(pc.greater(pc.list_value_length(col), index), col, None), index)
        return col


def read(records: Sequence[str], field: FieldPath) -> tuple[np.ndarray, np.ndarray]:
    """Times (ms) and values of `field` of stored records (JSON text, one each), nulls and NaN left out."""
    if not records:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    options = pajson.ParseOptions(explicit_schema=field.schema(), unexpected_field_behavior="ignore")
    try:
        table = pajson.read_json(io.BytesIO("\n".join(records).encode()), parse_options=options)
    except pa.ArrowInvalid as e:
        raise BadRequest(f"field {field.text!r}: the logged records do not hold numbers there ({e})",
                         hint="name a numeric field of the records, e.g. out.variable[0] (see get_logs)") from None
    times, values = table.column("time").combine_chunks(), field.column(table)
    keep = pc.and_(pc.is_valid(times), pc.is_finite(pc.fill_null(values, np.nan)))
    return (pc.filter(times, keep).to_numpy(zero_copy_only=False),
            pc.filter(values, keep).to_numpy(zero_copy_only=False).astype(np.float64))


def edges(baseline: np.ndarray, mode: str, count: int) -> np.ndarray:
    """N+1 bin edges over the baseline's range: its quantiles, or equal widths."""
    if baseline.size == 0:
        raise BadRequest("baseline: no values of the field to bin", hint="widen the baseline window or give values")
    if mode == "quantile":
        return np.quantile(baseline, np.linspace(0.0, 1.0, count + 1))
    return np.linspace(baseline.min(), baseline.max(), count + 1)


def proportions(values: np.ndarray, bin_edges: np.ndarray) -> np.ndarray:
    """The share of `values` in each of the N+2 bins (module docstring); zeros for no values."""
    n = bin_edges.size - 1
    index = np.searchsorted(bin_edges, values, side="right")
    index[values == bin_edges[-1]] = n
    counts = np.bincount(index, minlength=n + 2).astype(np.float64)
    return counts / values.size if values.size else counts


def score(metric: str, window: np.ndarray, baseline: np.ndarray) -> float:
    if metric == "psi":
        w, b = np.maximum(window, EPSILON), np.maximum(baseline, EPSILON)
        return float(np.sum((w - b) * np.log(w / b)))
    diff = np.abs(window - baseline)
    return float(diff.max() if metric == "maxdiff" else diff.sum())
