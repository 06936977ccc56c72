"""The loaded pipeline: one onnxruntime session per step, input binding, chaining, validations, timings.

`Pipeline.run(table)` takes the request as an Arrow table and gives back the result as one flat Arrow table
(`time`, `in.*`, `out.*`, `anomaly.*`, `metadata.*`): the /infer response, the inference log record and the
Arrow answer are all that one table.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.compute as pc
from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OrtFail
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument as OrtInvalidArgument
from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException as OrtRuntimeException

from engine import providers
from joey import validations
from joey.errors import (
    BadArtifact,
    BadColumn,
    InferenceFailed,
    MissingColumn,
    NonNumeric,
    NullValues,
    RaggedColumn,
    UnboundInputs,
    ValueOutOfRange,
    WrongWidth,
)
from joey.pipeline_config import PipelineConfig, StepConfig, TensorSig

log = logging.getLogger("engine")


@dataclass(frozen=True)
class Step:
    config: StepConfig
    session: ort.InferenceSession
    inputs: tuple[TensorSig, ...]
    outputs: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.config.name


class Pipeline:
    def __init__(self, config: PipelineConfig, directory: Path, threads: int, *, partition: str, digest: str):
        self.config = config
        self.digest = digest          # the manifest's
        self.partition = partition
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        asked = providers.requested(config.name, config.engine, ort.get_available_providers())
        if providers.CUDA in asked:   # the cuda image's CUDA and cuDNN are NVIDIA's wheels, off the loader's path
            ort.preload_dlls(directory="")
        self.steps = tuple(_load_step(s, directory, options, config, asked) for s in config.steps)
        got = [p for step in self.steps for p in step.session.get_providers()]
        providers.confirm(config.name, config.engine, asked, got)
        log.info("Pipeline %s: onnxruntime execution providers %s (accel %s)", config.name,
                 ", ".join(dict.fromkeys(got)), config.engine.accel)
        try:
            self.validations = tuple(validations.parse(n, e) for n, e in config.validations.items())
        except validations.ValidationSyntaxError as e:
            raise BadArtifact(config.name, f"validation: {e}") from None
        for prev, step in zip(self.steps, self.steps[1:]):
            wanted = step.config.tensor_fields or prev.outputs
            if len(wanted) != len(step.inputs) or not set(wanted) <= set(prev.outputs):
                raise BadArtifact(config.name, f"step {step.name!r} takes {len(step.inputs)} input(s) that the "
                                               f"outputs of {prev.name!r} ({', '.join(prev.outputs)}) cannot feed")
        last_outputs = set(self.steps[-1].outputs)
        for v in self.validations:
            if not v.outputs <= last_outputs:
                raise BadArtifact(config.name, f"validation {v.name!r} reads outputs the last step does not give "
                                               f"({', '.join(sorted(v.outputs - last_outputs))})")
        last = self.steps[-1].config
        self._last_model = json.dumps({"model_name": last.name, "model_sha": last.model.sha256},
                                      separators=(",", ":"))

    # ---------------------------------------------------------------------------------------------- running
    def run(self, table: pa.Table, *, read_ns: int = 0) -> pa.Table:
        """Run every step over the table's rows; the flat result table. `read_ns`: time spent decoding."""
        started = time.time_ns()
        t0 = time.perf_counter_ns()
        n = table.num_rows
        first = self.steps[0]
        bound = _bind(first, table)
        feeds = first_feeds = {sig.name: _tensor(table.column(col), col, sig, n) for sig, col in bound}
        elapsed = [read_ns + time.perf_counter_ns() - t0]
        outputs: dict[str, np.ndarray] = {}
        for i, step in enumerate(self.steps):
            if i:
                feeds = _chain(step, outputs, n)
            t = time.perf_counter_ns()
            try:
                values = step.session.run(list(step.outputs), feeds)
            except (OrtFail, OrtInvalidArgument, OrtRuntimeException) as e:
                raise InferenceFailed(step.name, str(e).strip().splitlines()[-1][:300]) from None
            elapsed.append(time.perf_counter_ns() - t)
            outputs = dict(zip(step.outputs, values))

        columns: dict[str, pa.Array] = {"time": pa.repeat(pa.scalar(started // 1_000_000, pa.int64()), n)}
        # Bound columns are echoed as the model got them (its dtype, one list per row), so every record of a
        # pipeline has the same `in` schema whatever the request's format; other columns pass through.
        echoed = {col: _echo(first_feeds[sig.name], n) for sig, col in bound}
        for name, col in zip(table.column_names, table.columns):
            columns[f"in.{name}"] = echoed.get(name, col)
        for name, value in outputs.items():
            columns[f"out.{name}"] = _list_column(value, n)
        flags = [(v.name, v.evaluate(outputs, n)) for v in self.validations]
        count = np.zeros(n, np.int32)
        for _, flag in flags:
            count += flag
        columns["anomaly.count"] = pa.array(count)
        for name, flag in flags:
            columns[f"anomaly.{name}"] = pa.array(flag)
        columns["metadata.last_model"] = pa.repeat(self._last_model, n)
        columns["metadata.pipeline_version"] = pa.repeat(self.config.version, n)
        columns["metadata.elapsed"] = _repeated_list(np.array(elapsed, np.int64), n)
        columns["metadata.dropped"] = _repeated_list(np.array([], np.str_), n, pa.string())
        columns["metadata.partition"] = pa.repeat(self.partition, n)
        return pa.table(columns)


    def sample(self) -> pa.Table | None:
        """A two-row request of zeros the first step accepts (None when an input's shape is open): running it
        at load time pays the first-call set-up costs (~150 ms) before any real request could."""
        first = self.steps[0]
        columns = {}
        for name, sig in zip(first.config.tensor_fields or [s.name for s in first.inputs], first.inputs):
            if sig.width is None or sig.type not in _ONNX_TYPES.values():
                return None
            try:
                zeros = pa.array(np.zeros(2 * sig.width, np.dtype(sig.type)))
            except MemoryError:  # a model declaring more values per row than this machine holds can never serve
                raise BadArtifact(self.config.name, f"input {sig.name!r} of model {first.name!r} declares "
                                                    f"{sig.width} values per row; two rows do not fit in memory"
                                  ) from None
            columns[name] = pa.FixedSizeListArray.from_arrays(zeros, sig.width)
        return pa.table(columns)


def _load_step(step: StepConfig, directory: Path, options: ort.SessionOptions, config: PipelineConfig,
               asked: list[str]) -> Step:
    try:
        session = ort.InferenceSession(str(directory / step.file), options, providers=asked)
    except Exception as e:  # onnxruntime raises its own unrelated types for a bad model
        raise BadArtifact(config.name, f"onnxruntime cannot load model {step.name!r}: {e}") from None
    inputs = tuple(TensorSig(i.name, _onnx_dtype(i.type), tuple(i.shape)) for i in session.get_inputs())
    return Step(step, session, inputs, tuple(o.name for o in session.get_outputs()))


_ONNX_TYPES = {"float": "float32", "double": "float64", "float16": "float16", "int8": "int8", "int16": "int16",
               "int32": "int32", "int64": "int64", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
               "uint64": "uint64", "bool": "bool"}


def _onnx_dtype(onnx_type: str) -> str:
    """numpy dtype name of an onnxruntime type string such as `tensor(float)`; the ONNX name otherwise."""
    inner = onnx_type.removeprefix("tensor(").removesuffix(")")
    return _ONNX_TYPES.get(inner, inner)


# ------------------------------------------------------------------------------------------------ binding

def _bind(step: Step, table: pa.Table) -> list[tuple[TensorSig, str]]:
    """Which request column feeds each input of the first model.

    By the step's tensor_fields, in order; else by columns named like the inputs; else one column to one input.
    """
    columns = table.column_names
    names = [s.name for s in step.inputs]
    if step.config.tensor_fields is not None:
        for field, sig in zip(step.config.tensor_fields, step.inputs):
            if field not in columns:
                raise MissingColumn(field, sig.name, step.name, columns)
        return list(zip(step.inputs, step.config.tensor_fields))
    if all(n in columns for n in names):
        return [(s, s.name) for s in step.inputs]
    if len(columns) == 1 and len(names) == 1:
        return [(step.inputs[0], columns[0])]
    missing = [n for n in names if n not in columns]
    if len(missing) < len(names):
        sig = next(s for s in step.inputs if s.name == missing[0])
        raise MissingColumn(missing[0], sig.name, step.name, columns)
    raise UnboundInputs(step.name, names, columns)


def _tensor(col: pa.ChunkedArray, name: str, sig: TensorSig, n: int) -> np.ndarray:
    """A request column as the model input's numpy array: values flattened (no copy when the layout allows),
    reshaped to (rows, *the input's dims), cast to the input's dtype."""
    arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    width = 1
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        _no_nulls(arr, name)
        if pa.types.is_fixed_size_list(arr.type):
            per_row = arr.type.list_size
        else:
            lengths = pc.list_value_length(arr).to_numpy()
            per_row = int(lengths[0]) if len(lengths) else 0
            odd = np.flatnonzero(lengths != per_row)
            if len(odd):
                raise RaggedColumn(name, int(odd[0]) // max(width, 1), int(lengths[odd[0]]), per_row)
        width *= per_row
        arr = arr.flatten()
    _no_nulls(arr, name, width)
    t = arr.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise NonNumeric(name, f"{t} values", sig.type)
    values = arr.to_numpy(zero_copy_only=False)
    try:
        # Overflow and nan-to-int casts are checked just below, by value.
        with np.errstate(invalid="ignore", over="ignore"):
            cast = values.astype(np.dtype(sig.type), copy=False)
    except TypeError:
        raise NonNumeric(name, f"{t} values", sig.type) from None
    _check_fits(values, cast, name, sig.type, width)
    return cast.reshape(_row_shape(sig, name, width, n))


def _check_fits(values: np.ndarray, cast: np.ndarray, name: str, dtype: str, width: int) -> None:
    """Refuse a value the cast changed beyond rounding (a float past float32 becoming inf, an integer past
    the input's range wrapping), naming its column and row."""
    src, dst = values.dtype, cast.dtype
    if src == dst or dst.kind == "b" or src.kind == "b":
        return
    if dst.kind == "f":
        bad = np.isinf(cast) & np.isfinite(values) if src.kind == "f" else None
    elif src.kind == "f":
        info = np.iinfo(dst)
        # float(max) + 1 is the power of two just past the range, exact as a float where max itself is not.
        bad = ~np.isfinite(values) | (values < info.min) | (values >= float(info.max) + 1)
    else:
        have, want = np.iinfo(src), np.iinfo(dst)
        lo, hi = max(have.min, want.min), min(have.max, want.max)
        if lo == have.min and hi == have.max:
            return
        bad = (values < lo) | (values > hi)
    if bad is not None and bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueOutOfRange(name, i // max(width, 1), values[i].item(), dtype)


def _row_shape(sig: TensorSig, name: str, width: int, n: int) -> tuple[int, ...]:
    """(rows, *dims) for `width` values per row; an unknown dim takes what the known ones leave."""
    if sig.shape is None:
        return (n, width)
    dims = list(sig.shape[1:])
    if sig.width is not None:
        if width != sig.width:
            raise WrongWidth(name, sig.width, width)
        return (n, *dims)
    unknown = [i for i, d in enumerate(dims) if not isinstance(d, int) or d <= 0]
    known = int(np.prod([d for i, d in enumerate(dims) if i not in unknown]))
    if len(unknown) != 1 or width % known:
        raise BadColumn(name, f"{width} value(s) per row do not fit input {sig.name!r} of shape "
                              f"{list(sig.shape)}")
    dims[unknown[0]] = width // known
    return (n, *dims)


def _no_nulls(arr: pa.Array, name: str, width: int = 1) -> None:
    if arr.null_count:
        first = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise NullValues(name, first // max(width, 1))


def _chain(step: Step, previous: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Feeds of a later step: the previous step's outputs named by tensor_fields, else in order."""
    names = step.config.tensor_fields or list(previous)
    feeds = {}
    for sig, out in zip(step.inputs, names):
        value = previous[out]
        dims = sig.shape[1:] if sig.shape else ()
        shape = (n, *dims) if sig.width is not None else (n, -1) if dims else (n,)
        feeds[sig.name] = value.astype(np.dtype(sig.type), copy=False).reshape(shape)
    return feeds


def _echo(value: np.ndarray, n: int) -> pa.Array:
    return pa.array(value) if value.ndim == 1 else _list_column(value, n)


def _list_column(value: np.ndarray, n: int) -> pa.Array:
    """A tensor as a column holding each row's values as one list (trailing dims flattened)."""
    flat = np.ascontiguousarray(value).reshape(n, -1)
    width = flat.shape[1]
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(flat.reshape(-1)))


def _repeated_list(value: np.ndarray, n: int, type_: pa.DataType | None = None) -> pa.Array:
    """The same list on every row (pa.repeat of a list scalar is much slower)."""
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * len(value))
    return pa.ListArray.from_arrays(offsets, pa.array(np.tile(value, n), type_))
