"""Model inspection: what an ONNX file takes and gives, checked with onnx's own checker.

Models can be large, so the file is read once: its sha256 runs on another core while onnx's C++ checker
parses the same bytes, and the signature is read by a wire-format scan that skips initializer payloads instead
of parsing them into Python. Results are cached by the file's identity (path, size, mtime, ctime, inode), so a
republish of unchanged models inspects nothing.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import onnx
from onnx import helper

from joey.errors import ModelError
from joey.fsutil import write_atomic
from joey.pipeline_config import ModelInfo, TensorSig

_CHUNK = 4 * 2**20
_IN_MEMORY_LIMIT = 2**31 - 1  # protobuf's own limit; larger models are checked by path
_CACHE_VERSION = 1


def sha256_file(path: Path) -> tuple[str, int]:
    """Hex sha256 and size of a file, streamed."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _sig(value: onnx.ValueInfoProto) -> TensorSig:
    t = value.type
    if not t.HasField("tensor_type"):
        return TensorSig(value.name, "unknown", None)
    elem = t.tensor_type.elem_type
    try:
        dtype = helper.tensor_dtype_to_np_dtype(elem).name
    except (KeyError, ValueError):
        dtype = onnx.TensorProto.DataType.Name(elem).lower()
    shape = None
    if t.tensor_type.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                      for d in t.tensor_type.shape.dim)
    return TensorSig(value.name, dtype, shape)


# ---------------------------------------------------------------- protobuf wire scan

def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: memoryview):
    """(field number, wire type, value or slice) for each field of one message, payloads not copied."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            value = buf[i:i + length]
            i += length
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


# ModelProto.graph = 7; GraphProto.initializer = 5, sparse_initializer = 15; TensorProto.name = 8;
# SparseTensorProto.values = 1 (a TensorProto).
def _light_model(data) -> tuple[onnx.ModelProto, set[str]]:
    """The model without initializer payloads, and the initializer names (to tell weights from inputs)."""
    out = bytearray()
    names: set[str] = set()
    for field, wire, value in _fields(memoryview(data)):
        if field == 7 and wire == 2:
            graph = bytearray()
            for gf, gw, gv in _fields(value):
                if gf in (5, 15) and gw == 2:
                    tensor = gv if gf == 5 else next((v for f, w, v in _fields(gv) if f == 1 and w == 2), gv)
                    for tf, tw, tv in _fields(tensor):
                        if tf == 8 and tw == 2:
                            names.add(bytes(tv).decode("utf-8", "replace"))
                    continue
                graph += _encode(gf, gw, gv)
            out += _encode(7, 2, graph)
        else:
            out += _encode(field, wire, value)
    model = onnx.ModelProto()
    model.ParseFromString(bytes(out))
    return model, names


# Bytes per element of the fixed-size TensorProto.DataType values (4-bit types: half a byte, rounded up).
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
             17: 1, 18: 1, 19: 1, 20: 1, 21: 0.5, 22: 0.5, 23: 0.5}
STAND_IN_MIN_BYTES = 64 * 2**20


def _stand_in(data) -> bytes | None:
    """The model with each top-level weight replaced by a one-element tensor of its name and type, after checking
    that its payload holds exactly what its shape and type declare — what onnx's checker would check of it.

    onnx's checker then sees the whole structure (graph, nodes, opsets, types) without parsing gigabytes of
    weights. Anything else than plain raw_data weights (typed fields, external data, sparse, strings, unknown
    types) gives None: the caller checks the real model instead.
    """
    out = bytearray()
    for field, wire, value in _fields(memoryview(data)):
        if not (field == 7 and wire == 2):
            out += _encode(field, wire, value)
            continue
        graph = bytearray()
        for gf, gw, gv in _fields(value):
            if gf == 15:
                return None
            if gf == 5 and gw == 2:
                stand_in = _tensor_stand_in(gv)
                if stand_in is None:
                    return None
                graph += _encode(5, 2, stand_in)
            else:
                graph += _encode(gf, gw, gv)
        out += _encode(7, 2, graph)
    return bytes(out)


def _tensor_stand_in(tensor) -> bytes | None:
    dims: list[int] = []
    name = raw = None
    data_type = 0
    for f, w, v in _fields(tensor):
        if f == 1 and w == 0:
            dims.append(v)
        elif f == 1 and w == 2:
            i = 0
            while i < len(v):
                d, i = _varint(v, i)
                dims.append(d)
        elif f == 2 and w == 0:
            data_type = v
        elif f == 8 and w == 2:
            name = bytes(v)
        elif f == 9 and w == 2:
            raw = v
        elif f in (12, 16):
            continue  # doc_string, metadata_props
        else:
            return None  # segment, typed data, external data, data_location: not the plain case
    itemsize = _ITEMSIZE.get(data_type)
    if raw is None or name is None or itemsize is None:
        return None
    count = 1
    for d in dims:
        count *= d
    expected = (count + 1) // 2 if itemsize == 0.5 else count * itemsize
    if len(raw) != expected:
        raise ValueError(f"TensorProto (tensor name: {name.decode('utf-8', 'replace')}) raw_data size "
                         f"({len(raw)} bytes) does not match its shape {dims} and type")
    return _encode(2, 0, data_type) + _encode(8, 2, name) + _encode(9, 2, b"\0" * max(1, int(itemsize + 0.5)))


def _encode(field: int, wire: int, value) -> bytes:
    def varint(v: int) -> bytes:
        b = bytearray()
        while True:
            x = v & 0x7F
            v >>= 7
            b.append(x | (0x80 if v else 0))
            if not v:
                return bytes(b)
    key = varint((field << 3) | wire)
    if wire == 0:
        return key + varint(value)
    if wire == 2:
        return key + varint(len(value)) + bytes(value)
    return key + bytes(value)


# ---------------------------------------------------------------- inspection

def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "joey" / "inspect"


def _cache_key(path: Path) -> str:
    st = path.stat()
    ident = f"{_CACHE_VERSION}:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
    return hashlib.sha256(ident.encode()).hexdigest()


def is_inspected(path: Path) -> bool:
    """Whether this very file (same identity) was inspected before: its result is cached."""
    try:
        return (_cache_dir() / f"{_cache_key(path)}.json").is_file()
    except OSError:
        return False


def inspect_model(path: Path, display: str | None = None) -> ModelInfo:
    """Check and describe an ONNX model file. Raises ModelError naming `display` (the spec's path)."""
    shown = display or str(path)
    try:
        key = _cache_key(path)
    except FileNotFoundError:
        raise ModelError(shown, "file not found") from None
    cached = _cache_dir() / f"{key}.json"
    try:
        return _info_from_json(json.loads(cached.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    info = _inspect(path, shown)
    try:
        write_atomic(cached, json.dumps(_info_to_json(info)).encode())
    except OSError:
        pass  # a cache we cannot write only costs time
    return info


# Digests being computed elsewhere (publish hashes large models to start their upload early): inspection waits for
# those instead of hashing the same bytes again on the same two cores.
_HASHING: ContextVar[dict[Path, Future]] = ContextVar("joey_hashing", default={})


@contextmanager
def digests_in_progress(futures: dict[Path, Future]) -> Iterator[None]:
    """Within this block, inspecting one of these files takes its sha256 from its future."""
    token = _HASHING.set({p.resolve(): f for p, f in futures.items()})
    try:
        yield
    finally:
        _HASHING.reset(token)


def _inspect(path: Path, shown: str) -> ModelInfo:
    size = path.stat().st_size
    known = _HASHING.get().get(path.resolve())
    try:
        mapped = _inspect_mapped(path, known) if size >= STAND_IN_MIN_BYTES else None
        if mapped is not None:
            sha, model, initializers = mapped
        elif size > _IN_MEMORY_LIMIT:
            sha = known.result()[0] if known else sha256_file(path)[0]
            onnx.checker.check_model(str(path))
            model = onnx.load(str(path), load_external_data=False)
            initializers = {i.name for i in model.graph.initializer}
        else:
            data = path.read_bytes()
            with ThreadPoolExecutor(1) as pool:
                sha_future = pool.submit(lambda: hashlib.sha256(data).hexdigest()) if known is None else None
                onnx.checker.check_model(data)
                model, initializers = _light_model(data)
                sha = sha_future.result() if sha_future else known.result()[0]
    except FileNotFoundError:
        raise ModelError(shown, "file not found") from None
    except Exception as e:  # onnx raises several unrelated types for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(shown, f"not a valid ONNX model ({first})") from None
    return ModelInfo(
        sha256=sha,
        size=size,
        inputs=tuple(_sig(v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(_sig(v) for v in model.graph.output),
        opset={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        producer=" ".join(p for p in (model.producer_name, model.producer_version) if p),
    )


def _inspect_mapped(path: Path, known: Future | None):
    """A large model checked through its stand-in (see _stand_in), read through a memory map: the weights are
    hashed but never copied or parsed. None when the model is not of the plain kind the stand-in covers."""
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        view = memoryview(mapped)
        stand_in = _stand_in(view)
        if stand_in is None:
            return None
        onnx.checker.check_model(stand_in)
        model, initializers = _light_model(view)
        sha = known.result()[0] if known else hashlib.sha256(view).hexdigest()
        return sha, model, initializers
    finally:
        try:
            mapped.close()
        except BufferError:
            pass  # slices are still held by an exception on its way out; the map goes with them


def _info_to_json(info: ModelInfo) -> dict:
    return {"sha256": info.sha256, "size": info.size, "inputs": [s.to_json() for s in info.inputs],
            "outputs": [s.to_json() for s in info.outputs], "opset": info.opset, "producer": info.producer}


def _info_from_json(d: dict) -> ModelInfo:
    return ModelInfo(d["sha256"], int(d["size"]), tuple(TensorSig.from_json(s) for s in d["inputs"]),
                     tuple(TensorSig.from_json(s) for s in d["outputs"]), dict(d["opset"]), d["producer"])
