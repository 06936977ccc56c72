"""Shared by the log store's tests: inference records shaped like the engine's, and a walk of the segment file
format (engine/logstore) to find and damage frames on purpose."""
from __future__ import annotations

import struct
from pathlib import Path

import pyarrow as pa

from engine.logstore import HEADER_SIZE, LogStore


def records(ids, version: str = "v1", width: int = 4) -> pa.Table:
    """Inference records shaped like the engine's, with an `id` column the tests follow."""
    ids = list(ids)
    n = len(ids)
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "time": pa.array([1713880461579 + i for i in ids], pa.int64()),
        "in.tensor": pa.array([[float(i)] * width for i in ids], pa.list_(pa.float32())),
        "out.variable": pa.array([[i / 2] for i in ids], pa.list_(pa.float32())),
        "anomaly.count": pa.array([0] * n, pa.int64()),
        "metadata.last_model": pa.array(['{"model_name":"ccfraud","model_sha":"e22a"}'] * n),
        "metadata.pipeline_version": pa.array([version] * n),
        "metadata.elapsed": pa.array([[1067541, 21209776]] * n, pa.list_(pa.int64())),
        "metadata.dropped": pa.array([[]] * n, pa.list_(pa.string())),
        "metadata.partition": pa.array(["edge-1"] * n),
    })


def ids_of(table: pa.Table) -> list[int]:
    return table["id"].to_pylist() if table.num_rows else []


def assert_identity(store: LogStore) -> None:
    s = store.stats()
    assert s.next_seq == s.records_acked + s.records_dropped + s.records_lost + s.records_stored, s


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def frames(path: Path) -> list[tuple[int, int, int, int]]:
    """(offset, kind, first_seq, count) of each frame, walking the documented format."""
    data = path.read_bytes()
    out, pos = [], 8
    while pos + HEADER_SIZE <= len(data):
        _, _, kind, length, first, count, _ = struct.unpack_from("<4sIB3xIQII", data, pos)
        out.append((pos, kind, first, count))
        pos += HEADER_SIZE + length
    return out


def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)

