"""JSON text of numeric arrays in one orjson call each, floats laid out like Python's repr with a real
engine's digits, and the per-value spans of that text (no copy of it): the number-printing half of the records
JSON encoder."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc


def spans(bounds: np.ndarray, text: pa.Buffer) -> pa.Array:
    """A string array over `text` whose element i is text[bounds[i]:bounds[i+1]] (no copy of the text)."""
    offsets = np.ascontiguousarray(bounds, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), len(offsets) - 1, [None, pa.py_buffer(offsets), text])


def dump(arr: np.ndarray) -> pa.Buffer:
    """JSON text of a numeric array (`[v0,v1,...]`, or nested for 2-D), floats laid out as Python's repr,
    float32 ties printed upward (_with_upper_ties).

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
        return _with_upper_ties(arr, pa.py_buffer(orjson.dumps(arr, option=orjson.OPT_SERIALIZE_NUMPY)))
    text = orjson.dumps(np.where(special, np.nan, arr).astype(arr.dtype, copy=False),
                        option=orjson.OPT_SERIALIZE_NUMPY)
    nulls = np.flatnonzero(np.frombuffer(text, np.uint8) == ord("n")).astype(np.int32)
    # Pieces alternate: text before the first null, a null, text up to the next null, ...
    bounds = np.empty(2 * len(nulls) + 2, np.int32)
    bounds[0], bounds[-1] = 0, len(text)
    bounds[1:-1:2], bounds[2:-1:2] = nulls, nulls + 4
    pieces = spans(bounds, pa.py_buffer(text))
    is_null = np.zeros(len(pieces), bool)
    is_null[1::2] = True
    spliced = pc.replace_with_mask(pieces, pa.array(is_null), _repr_floats(arr[special]))
    offsets = np.frombuffer(spliced.buffers()[1], np.int32, len(spliced) + 1, spliced.offset * 4)
    return _with_upper_ties(arr, spliced.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0])))


def _with_upper_ties(arr: np.ndarray, text: pa.Buffer) -> pa.Buffer:
    """`text` (the dump of `arr`) with each float32 tie printed as a real engine prints it.

    Where a float32 lies exactly halfway between the two shortest decimal texts that read back as it, orjson
    and numpy print the even one (513264.625 -> 513264.62); a real engine's Ryu prints the one farther from
    zero (513264.63). The two texts differ in their last digit only, which a tie's text ends with (positional,
    with decimals: see _upper_digits), so that byte is rewritten.
    """
    if arr.dtype != np.float32 or arr.size == 0:
        return text
    flat = arr.reshape(-1)
    scaled = flat.astype(np.float64) * _GRID   # in float64 no value overflows; inf stays, nan is dropped here
    candidates = np.flatnonzero(scaled == np.rint(scaled))
    if not len(candidates):
        return text
    bits = flat[candidates].view(np.uint32)
    if len(candidates) <= _FEW:
        digits = np.array([_upper_digits(b, int.bit_length) for b in bits.tolist()], np.int64)
    else:
        digits = _upper_digits(bits.astype(np.int64), _bit_lengths)
    ties = np.flatnonzero(digits)
    if not len(ties):
        return text
    out = np.frombuffer(text, np.uint8).copy()
    # A value's text ends before a `,` or `]`, unless that is the `]` ending a row of a 2-D dump.
    ends = np.flatnonzero((out == ord(",")) | (out == ord("]"))) - 1
    ends = ends[out[ends] != ord("]")]
    out[ends[candidates[ties]]] = ord("0") + digits[ties]
    return pa.py_buffer(out)


# Only a value with at most 13 binary decimals can be a tie (_upper_digits): x * 2**13 is whole. Up to _FEW
# candidates Python's integers beat numpy's cost per call (measured: 5 us a value, against 23 us for any count).
_GRID = 2.0**13
_FEW = 4


def _bit_lengths(x: np.ndarray) -> np.ndarray:
    """int.bit_length of each power of two in `x` (< 2**24, exact as float32), from its float exponent."""
    return (x.astype(np.float32).view(np.int32) >> 23) - 126


def _upper_digits(bits: Any, bit_length: Callable[[Any], Any]) -> Any:
    """The last digit of the upper shortest text of each float32 (bits: its IEEE bits, an int or an int64 array)
    that is a tie, else 0 (a tie's upper text never ends in 0: it would be shorter). Written once for ints and
    arrays; `bit_length` is int.bit_length or _bit_lengths.

    A finite float32 is m_odd / 2**p exactly, N / 10**p with N = m_odd * 5**p ending in 5: its exact decimal has
    p decimals. It is a tie when its shortest text has p - 1 decimals: both neighbours on that grid,
    (N -/+ 5) / 10**p, read back as it and neither neighbour on the p - 2 grid does. Scaled by 2**(a+2) * 10**p
    (2**a: the lowest set bit of the 24-bit mantissa) half an ulp is 2 * 5**p (half that below a power of
    two), so each test is on integers. A shortest text has at most 9 digits, so N < 10**10: p <= 13, so
    |x| >= 2**-13 > 1e-4, and x < 2**23; a p - 1 neighbour is 10 * 2**(a+1) >= 20 from x in these units,
    within 2 * 5**p only from p = 2. So a tie prints positionally with p - 1 >= 1 decimals.
    """
    biased = (bits >> 23) & 0xFF
    fraction = bits & 0x7FFFFF
    mantissa = fraction | 0x800000
    a = bit_length(mantissa & -mantissa) - 1
    p = 150 - biased - a                                   # x = (mantissa >> a) / 2**p
    valid = (p >= 2) & (p < len(_POW5)) & (biased < 0xFF)  # subnormals and zero have p >= 126
    pow5 = np.take(_POW5, p, mode="clip")
    n = (mantissa >> a) * pow5                             # < 2**24 * 5**13 < 2**63
    scale = 4 << a
    above = 2 * pow5
    below = above >> (fraction == 0)
    rest = n % 100
    tie = valid & (5 * scale < below) & (rest * scale >= below) & ((100 - rest) * scale >= above)
    return tie * (rest // 10 + 1)                          # N's tens digit + 1: no carry, as the upper never ends in 0


_POW5 = 5 ** np.arange(14, dtype=np.int64)   # a table: numpy's integer power is slow


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
    return pc.utf8_slice_codeunits(spans(value_bounds(text, count), text), 0, -1)


def value_bounds(text: pa.Buffer, count: int) -> np.ndarray:
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
    """Python's repr of a float applied to the shortest digits of its own width, float32 ties upward as in
    dump; null for nan and inf."""
    if not np.isfinite(x):
        return b"null"
    sci = np.format_float_scientific(x, unique=True, exp_digits=2)
    mantissa, _, exponent = sci.partition("e")
    if -4 <= int(exponent) < 16:
        text = np.format_float_positional(x, unique=True, trim="0").encode()
        tie = _upper_digits(int(np.array(x).view(np.uint32)), int.bit_length) if x.dtype == np.float32 else 0
        return text[:-1] + str(tie).encode() if tie else text
    return f"{mantissa.rstrip('.')}e{exponent}".encode()


def dump_matrix(values: pa.Array, width: int) -> pa.Array:
    """Rows of `width` numbers each, as `[v,...]` texts, from one dump of the (rows, width) matrix.

    The dump reads `[[r0],[r1],...]`; a bracket never occurs inside a number, so the row starts are the
    opening brackets after the first, and each row's span ends in one extra character (`,` or `]`).
    """
    text = dump(values.to_numpy(zero_copy_only=False).reshape(-1, width))
    starts = np.flatnonzero(np.frombuffer(text, np.uint8) == ord("["))
    starts[0] = len(text)   # the outer bracket is no row start; reused as the end of the last row
    return pc.utf8_slice_codeunits(spans(np.roll(starts, -1), text), 0, -1)


def dump_numbers(values: pa.Array) -> tuple[pa.Buffer, np.ndarray]:
    """JSON text `[v0,v1,...]` of a numeric array and its _value_bounds."""
    arr = values.to_numpy(zero_copy_only=False)
    text = dump(arr)
    return text, value_bounds(text, len(arr))
