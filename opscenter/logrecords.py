"""Inference log records: stamping an edge's records on arrival, selecting and flattening them for export.

Records are the engine's pandas-records (`time`, `in`, `out`, `anomaly`, `metadata`). Exports use the seeds'
flattened column names (`out.variable`, `metadata.partition`), as pandas.json_normalize would produce.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from joey.errors import BadRequest
from joey.opswire import GetLogs

_INT64 = 2**63


def stamp(record: dict[str, Any], edge_name: str, index: int) -> dict[str, Any]:
    """The record as stored: metadata.partition is the edge's name whatever the edge wrote there."""
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict):
        raise BadRequest(f"records[{index}].metadata: expected an object")
    time = record.get("time")
    if time is not None and (isinstance(time, bool) or not isinstance(time, int) or not -_INT64 <= time < _INT64):
        raise BadRequest(f"records[{index}].time: expected epoch milliseconds as an integer")
    return {**record, "metadata": {**metadata, "partition": edge_name}}


def flatten(record: dict[str, Any], dataset: Iterable[str] | None = None) -> dict[str, Any]:
    """Nested objects become `parent.child` keys; lists stay values. `dataset` keeps only the columns it names:
    a top-level field keeps all its columns (seed 003: ["time", "out", "metadata"]), a dotted name keeps that
    column or the columns under it (["time", "out.variable", "metadata.partition"]); None or ["*"] keeps all."""
    keep = None if dataset is None or "*" in dataset else tuple(dataset)
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif keep is None or any(prefix == d or prefix.startswith(f"{d}.") for d in keep):
            flat[prefix] = value

    for key, value in record.items():
        walk(key, value)
    return flat


def page_filter(req: GetLogs, id_column: str) -> tuple[str, list[Any]]:
    """The SQL condition and parameters for the rows a GetLogs page may draw from: its pipeline, `id_column`
    past the cursor, its partition if it names one. The database's `logs` and the archive's catalog alike."""
    sql, params = f"pipeline_name = ? AND {id_column} > ?", [req.pipeline_name, req.after]
    if req.partition is not None:
        sql += " AND partition = ?"
        params.append(req.partition)
    return sql, params
