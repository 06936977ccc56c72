"""The Open Inference Protocol v2 (KServe / Triton REST) beside the seeds' API, over the same pipeline.

The served pipeline is one model named like the pipeline: its inputs are the request columns the first step
binds, its outputs the last step's. A request's tensors become the columns of a request table, which runs and
is recorded through the engine's one path (Engine.run_recorded); the answer is the result's `out.*` columns as
tensors. Tensors come as JSON `data` or, with the binary tensor extension that tritonclient uses by default,
as raw little-endian bytes after a JSON header of `Inference-Header-Content-Length` bytes, each input's
`binary_data_size` long; outputs asked for with `binary_data` (or the request's `binary_data_output`) are
answered the same way. docs/engine-api.md describes the routes.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.fastpath import read_body
from engine.limits import Limits, variable
from engine.limits import current as current_limits
from engine.runtime import Pipeline
from engine.service import Engine
from joey import __version__, envvars
from joey.errors import BadRequest, DuplicateColumn, MalformedBody, NotFound, OverLimit
from joey.pipeline_config import TensorSig

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data"]
# OIP datatypes by numpy dtype name; BYTES (length-prefixed strings) has no numeric column to feed.
DATATYPES = {"bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
             "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64", "float16": "FP16",
             "float32": "FP32", "float64": "FP64"}
_DTYPES = {v: np.dtype(k) for k, v in DATATYPES.items()}
# JSON values of these numpy kinds may fill a tensor of the key's kind.
_JSON_KINDS = {"b": "b", "u": "bu", "i": "bui", "f": "buif"}


def routes(engine: Engine) -> list[Route]:
    """The /v2 routes, for the engine's Starlette app (engine.server)."""
    limits = current_limits()

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "joey-engine", "version": __version__, "extensions": EXTENSIONS})

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        engine.require_pipeline()
        return JSONResponse({"ready": True})

    async def model_metadata(request: Request) -> Response:
        return JSONResponse(metadata(_model(engine, request.path_params["name"])))

    async def model_ready(request: Request) -> Response:
        return JSONResponse({"name": _model(engine, request.path_params["name"]).config.name, "ready": True})

    async def infer(request: Request) -> Response:
        pipeline = _model(engine, request.path_params["name"])
        header_length = request.headers.get(HEADER_LENGTH)
        # A JSON-only body is parsed whole, so it has the JSON bound; a binary one only its header.
        limit, var = engine.settings.max_body, envvars.MAX_BODY
        if header_length is None and limits.max_json_body < limit:
            limit, var = limits.max_json_body, envvars.MAX_JSON_BODY
        declared = request.headers.get("content-length")
        body = await read_body(request.receive, declared.encode("latin-1") if declared else None, limit, var)
        call = Inference(pipeline, body, header_length, limits)
        content = await engine.run_recorded(pipeline, call.decode, call.encode, len(body))
        if call.header_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(call.header_length)})

    return [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/models/{name}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
    ]


def _model(engine: Engine, name: str) -> Pipeline:
    # The name is checked against the pipeline that runs the request: an in-line update may swap another in.
    pipeline = engine.require_pipeline()
    if name != pipeline.config.name:
        raise NotFound(f"model {name!r}", hint=f"this engine serves one model, {pipeline.config.name!r} (its "
                                              "pipeline)")
    return pipeline


def metadata(pipeline: Pipeline) -> dict[str, Any]:
    """The model metadata answer: the inputs the first step binds (by request column), the last step's outputs."""
    first, last = pipeline.steps[0], pipeline.steps[-1]
    columns = first.config.tensor_fields or [s.name for s in first.inputs]
    return {"name": pipeline.config.name, "versions": [pipeline.config.version],
            "platform": "onnxruntime_onnx" if len(pipeline.steps) == 1 else "ensemble",
            "inputs": [_tensor_metadata(column, sig) for column, sig in zip(columns, first.inputs, strict=False)],
            "outputs": [_tensor_metadata(sig.name, sig) for sig in last.config.model.outputs]}


def _tensor_metadata(name: str, sig: TensorSig) -> dict[str, Any]:
    dims = [-1, -1] if sig.shape is None else [d if isinstance(d, int) and d > 0 else -1 for d in sig.shape]
    return {"name": name, "datatype": DATATYPES.get(sig.type, sig.type.upper()), "shape": dims}


class Inference:
    """One infer request: `decode` reads it into a request table (and what it asks of the answer), `encode`
    answers a result table. Both may run on a worker thread (Engine.run_recorded)."""

    def __init__(self, pipeline: Pipeline, body: bytes, header_length: str | None, limits: Limits):
        self.pipeline, self.body, self.limits = pipeline, body, limits
        self.declared_header = header_length
        self.request_id: str | None = None
        self.wanted: list[tuple[str, bool]] = []   # (output, in binary), in the answer's order
        self.header_length: int | None = None      # of the answer, when it carries binary outputs

    def decode(self) -> pa.Table:
        body, declared = self.body, self.declared_header
        if declared is None:
            head, binary = body, memoryview(b"")
        else:
            if not declared.isdigit() or int(declared) > len(body):
                raise BadRequest(f"{HEADER_LENGTH} must be the byte length of the JSON header, at most the body's "
                                 f"{len(body)} bytes; got {declared!r}")
            head, binary = body[:int(declared)], memoryview(body)[int(declared):]
        try:
            request = orjson.loads(head)
        except orjson.JSONDecodeError as e:
            raise MalformedBody("inference request JSON", str(e)) from None
        inputs = request.get("inputs") if isinstance(request, dict) else None
        if not isinstance(inputs, list) or not inputs:
            raise MalformedBody("inference request JSON", 'expected an object with "inputs": [{"name", "shape", '
                                                          '"datatype", "data"}, ...]')
        _at_most(len(inputs), self.limits, "max_columns", "inputs")
        self.request_id = request.get("id")
        if self.request_id is not None and not isinstance(self.request_id, str):
            raise MalformedBody("inference request JSON", f'"id" must be a string, got {self.request_id!r}')
        # Checked before anything runs: a request refused after its record is stored would be logged unanswered.
        parameters = request.get("parameters")
        binary_default = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
        available = list(self.pipeline.steps[-1].outputs)
        asked = request.get("outputs")
        self.wanted = ([(name, binary_default) for name in available] if asked is None
                       else _asked(asked, available, binary_default))
        columns: dict[str, pa.Array] = {}
        offset = 0
        for i, tensor in enumerate(inputs):
            name, values, used = _input(i, tensor, binary[offset:])
            if name in columns:
                raise DuplicateColumn(name, sum(isinstance(t, dict) and t.get("name") == name for t in inputs))
            offset += used
            columns[name] = _column(values)
        if offset != len(binary):
            raise BadRequest(f"the body has {len(binary) - offset} byte(s) after the inputs' binary data "
                             "(binary_data_size)")
        rows = {len(c) for c in columns.values()}
        if len(rows) > 1:
            raise BadRequest(f"inputs disagree on the batch size (shape[0]): {sorted(rows)}")
        n = rows.pop()
        _at_most(n, self.limits, "max_rows", "rows (shape[0])")
        _at_most(n * len(columns), self.limits, "max_cells", "cells (rows x inputs)")
        return pa.table(columns)

    def encode(self, result: pa.Table) -> bytes:
        """The answer to `result`: JSON, or a JSON header followed by the binary outputs."""
        declared = {sig.name: sig for sig in self.pipeline.steps[-1].config.model.outputs}
        outputs, buffers = [], []
        for name, binary in self.wanted:
            column = result.column(f"out.{name}").combine_chunks()
            values = column.flatten().to_numpy(zero_copy_only=False)
            shape = _shape(len(column), len(values), declared.get(name))
            tensor: dict[str, Any] = {"name": name, "datatype": DATATYPES.get(values.dtype.name, "BYTES"),
                                      "shape": shape}
            if binary:
                data = values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
                tensor["parameters"] = {"binary_data_size": len(data)}
                buffers.append(data)
            else:
                tensor["data"] = values
            outputs.append(tensor)
        answer: dict[str, Any] = {"model_name": self.pipeline.config.name,
                                  "model_version": self.pipeline.config.version, "outputs": outputs}
        if self.request_id is not None:
            answer["id"] = self.request_id
        head = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
        if not buffers:
            return head
        self.header_length = len(head)
        return b"".join([head, *buffers])


def _input(i: int, tensor: Any, binary: memoryview) -> tuple[str, np.ndarray, int]:
    """(name, values shaped as declared, binary bytes used) of input `i`."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise MalformedBody("inference request JSON", f"inputs[{i}] must be an object with a \"name\"")
    name, shape, datatype = tensor["name"], tensor.get("shape"), tensor.get("datatype")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise BadRequest(f"input {name!r}: shape must be a list of sizes from 1 up, batch first, like [rows, 29]; "
                         f"got {shape!r}")
    dtype = _DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise BadRequest(f"input {name!r}: datatype {datatype!r} is not one of {', '.join(_DTYPES)}")
    count = math.prod(shape)
    parameters = tensor.get("parameters")
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if size != count * dtype.itemsize or size > len(binary):
            raise BadRequest(f"input {name!r}: binary_data_size {size!r} must be {count * dtype.itemsize} "
                             f"(shape {shape} of {datatype}) and within the body's binary part ({len(binary)} "
                             "bytes left)")
        return name, np.frombuffer(binary[:size], dtype.newbyteorder("<")).reshape(shape), size
    values = _json_values(name, tensor.get("data"), dtype)
    if values.size != count:
        raise BadRequest(f"input {name!r}: shape {shape} holds {count} value(s), data has {values.size}")
    return name, values.reshape(shape), 0


def _json_values(name: str, data: Any, dtype: np.dtype) -> np.ndarray:
    try:
        values = np.asarray(data if isinstance(data, list) else [data])
    except ValueError:   # ragged nesting
        raise BadRequest(f"input {name!r}: data must be a flat (or evenly nested) list of numbers") from None
    if values.dtype.kind not in _JSON_KINDS[dtype.kind] and values.size:
        raise BadRequest(f"input {name!r}: data holds {values.dtype.kind!r}-kind values, not {dtype.name} ones")
    with np.errstate(invalid="ignore", over="ignore"):
        cast = values.astype(dtype)
    if dtype.kind != "f" and not np.array_equal(cast, values):
        raise BadRequest(f"input {name!r}: data holds values outside {dtype.name}")
    return cast


def _column(values: np.ndarray) -> pa.Array:
    """A tensor as a request column: one row per batch entry, its other dims flattened into a fixed-size list."""
    if values.ndim == 1:
        return pa.array(values)
    flat = np.ascontiguousarray(values).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), math.prod(values.shape[1:]))


def _asked(asked: Any, available: list[str], binary_default: bool) -> list[tuple[str, bool]]:
    """(name, binary) of each output the request names; `binary_data` of its own, else the request's."""
    if not isinstance(asked, list):
        raise MalformedBody("inference request JSON", '"outputs" must be a list like [{"name": "..."}]')
    wanted = []
    for i, output in enumerate(asked):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in available:
            raise BadRequest(f"outputs[{i}] names {name!r}; the model's outputs are {', '.join(available)}")
        parameters = output.get("parameters")
        binary = parameters.get("binary_data", binary_default) if isinstance(parameters, dict) else binary_default
        wanted.append((name, binary is True))
    return wanted


def _shape(rows: int, count: int, sig: TensorSig | None) -> list[int]:
    """An output's shape: the model's dims when they are fixed and fit, else [rows, values per row]."""
    width = count // rows
    if sig is not None and sig.shape is not None:
        if len(sig.shape) == 1 and width == 1:
            return [rows]
        if sig.width == width:   # set only when every dim past the batch is a fixed size
            return [rows, *(d for d in sig.shape[1:] if isinstance(d, int))]
    return [rows, width]


def _at_most(count: int, limits: Limits, name: str, what: str) -> None:
    limit = getattr(limits, name)
    if count > limit:
        raise OverLimit(what, limit, variable(name), str(count))
