"""The JSON text of each row of an Arrow log page, built column by column with Arrow's string kernels.

An edge's page is the log store's flat table: a column `a.b` is key `b` of the object at key `a` of the record
(as the engine's pandas-records answers nest them). Ops stores each record as JSON text, so a page of 1,000
records must not cost 1,000 dicts and dumps: each column becomes one array of JSON value texts (numbers by one
orjson call over the column's numpy values, cut at the commas; strings escaped by a replace; lists joined per
row), and one element-wise join glues the key names and value texts into records. The texts differ from `json.dumps` of the same record only where JSON allows it
(spacing, a float written `1e+16`), so a record read back is the same value.

Types this does not cover (structs, maps, nested lists, a column named both `a` and `a.b`, strings holding
control characters) make `record_texts` answer None, and the caller goes record by record.
"""
from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.compute as pc

_INTEGRAL = r"^-?\d+$"          # a float Arrow printed without a point or an exponent: 2.0 prints "2"
_NEEDS_ESCAPE = r'["\\]'
_CONTROL = r"[\x00-\x1f]"


def record_texts(table: pa.Table) -> pa.Array | None:
    """One JSON object text per row; None when a column's type or name is outside what this builds."""
    groups: dict[str, list[tuple[str | None, pa.Array]]] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        group, dot, key = name.partition(".")
        groups.setdefault(group, []).append((key if dot else None, column.combine_chunks()))
    parts: list = []
    for g, (group, members) in enumerate(groups.items()):
        nested = members[0][0] is not None
        if nested != all(key is not None for key, _ in members) or (not nested and len(members) > 1):
            return None   # `a` beside `a.b`: no one object shape to write
        parts.append(("{" if g == 0 else ",") + _key(group) + ":" + ("{" if nested else ""))
        for m, (key, array) in enumerate(members):
            texts = value_texts(array)
            if texts is None:
                return None
            if nested:
                parts.append(("," if m else "") + _key(key) + ":")
            parts.append(texts)
        if nested:
            parts.append("}")
    if not parts:
        return pa.array(["{}"] * table.num_rows, pa.string())
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")


def value_texts(array: pa.Array) -> pa.Array | None:
    """Each value as JSON text ("null" for a null); None for a type this module does not write."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return value_texts(array.dictionary_decode())
    if pa.types.is_null(kind):
        return pa.array(["null"] * len(array), pa.string())
    if _is_number(kind) and array.null_count == 0:
        texts = _split(orjson.dumps(_numpy(array), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1], b",", len(array))
    elif pa.types.is_boolean(kind):
        texts = pc.if_else(array, "true", "false")
    elif pa.types.is_integer(kind):
        texts = pc.cast(array, pa.string())
    elif pa.types.is_float32(kind) or pa.types.is_float64(kind):
        texts = _floats(array)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        texts = _strings(array)
        if texts is None:
            return None
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        texts = _lists(array)
        if texts is None:
            return None
    else:
        return None
    return pc.fill_null(pc.cast(texts, pa.string()), "null")


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_float32(kind) or pa.types.is_float64(kind) or \
        pa.types.is_boolean(kind)


def _numpy(array: pa.Array):
    return array.to_numpy(zero_copy_only=False)


def _split(text: bytes, separator: bytes, n: int) -> pa.Array:
    """The n texts `separator` parts in `text` (orjson's output within its outer brackets)."""
    return pa.array(text.split(separator) if n else [], pa.string())


def _floats(array: pa.Array) -> pa.Array:
    """Shortest round-trip text in the column's own width (a float32 1.0094898 stays 1.0094898, as the
    engine's JSON writes it, and as orjson writes a float32 array); NaN and infinities are null, as in pandas'
    JSON. Only for columns with nulls, which orjson's numpy path cannot take."""
    texts = pc.cast(array, pa.string())
    texts = pc.replace_substring_regex(texts, _INTEGRAL, r"\0.0")
    return pc.if_else(pc.is_finite(array), texts, pa.scalar(None, pa.string()))


def _strings(array: pa.Array) -> pa.Array | None:
    if pc.any(pc.match_substring_regex(array, _CONTROL)).as_py():
        return None   # rare: JSON's \uXXXX escapes are left to the record-by-record path
    if pc.any(pc.match_substring_regex(array, _NEEDS_ESCAPE)).as_py():
        array = pc.replace_substring(pc.replace_substring(array, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise('"', array, '"', "")


def _lists(array: pa.Array) -> pa.Array | None:
    if pa.types.is_fixed_size_list(array.type):
        array = array.cast(pa.list_(array.type.value_type))
    if pa.types.is_large_list(array.type):
        array = array.cast(pa.list_(array.type.value_type))
    child = array.values
    offsets = array.offsets.to_numpy()
    widths = offsets[1:] - offsets[:-1]
    if (_is_number(child.type) and len(array) and array.null_count == 0 and child.null_count == 0
            and (widths == widths[0]).all()):
        # Tensors are as wide on every row: one 2-D dump, cut between the rows.
        matrix = _numpy(child.slice(offsets[0], offsets[-1] - offsets[0])).reshape(len(array), int(widths[0]))
        rows = _split(orjson.dumps(matrix, option=orjson.OPT_SERIALIZE_NUMPY)[2:-2], b"],[", len(array))
        return pc.binary_join_element_wise("[", rows, "]", "")
    if pa.types.is_list(child.type) or pa.types.is_large_list(child.type) or pa.types.is_fixed_size_list(
            child.type):
        return None   # lists of lists: the record-by-record path
    texts = value_texts(child)
    if texts is None:
        return None
    rows = pa.ListArray.from_arrays(array.offsets, texts, mask=array.is_null())
    return pc.binary_join_element_wise("[", pc.binary_join(rows, ","), "]", "")


def _key(name: str) -> str:
    return orjson.dumps(name).decode()
