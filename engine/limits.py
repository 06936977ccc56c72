"""The engine's per-request bounds: what one request may make it decode, hold and answer.

Each bound is an environment variable (joey/envvars.py) whose error names it; docs/reliability.md turns them
into the cost model (memory and CPU of one request as a function of its size). The defaults fit the chart's
1 Gi with room for several requests at once.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache

from joey import envvars, quantity
from joey.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    max_json_body: int = 16 * 2**20
    """JOEY_MAX_JSON_BODY: bytes of a JSON body (JOEY_MAX_BODY still caps every body). Parsing JSON builds a
    Python object per value, ~10x the text at worst, where an Arrow body is used in place."""
    max_rows: int = 100_000
    """JOEY_MAX_ROWS: records of one request (an answer costs ~0.5 KiB of JSON a row)."""
    max_columns: int = 256
    """JOEY_MAX_COLUMNS: columns of a request: keys of one record and distinct keys across its records."""
    max_cells: int = 4_000_000
    """JOEY_MAX_CELLS: rows x columns, so records with keys of their own cannot become a rows x keys table."""
    logs_max_records: int = 10_000
    """JOEY_LOGS_MAX_RECORDS: records one POST /logs answers; a larger `limit` is cut to it."""
    logs_max_bytes: int = 16 * 2**20
    """JOEY_LOGS_MAX_BYTES: stored bytes one POST /logs reads (wide records make fewer records fit)."""
    log_max_segments: int = 4096
    """JOEY_LOG_MAX_SEGMENTS: segment files of the log store; each schema change starts one."""


_VARIABLES = {"max_json_body": envvars.MAX_JSON_BODY, "max_rows": envvars.MAX_ROWS,
              "max_columns": envvars.MAX_COLUMNS, "max_cells": envvars.MAX_CELLS,
              "logs_max_records": envvars.LOGS_MAX_RECORDS, "logs_max_bytes": envvars.LOGS_MAX_BYTES,
              "log_max_segments": envvars.LOG_MAX_SEGMENTS}
_SIZES = {"max_json_body", "logs_max_bytes"}


def variable(name: str) -> str:
    """The environment variable of the Limits field `name`."""
    return _VARIABLES[name]


def from_env(env: Mapping[str, str]) -> Limits:
    values: dict[str, int] = {}
    for f in fields(Limits):
        raw = env.get(_VARIABLES[f.name], "").strip()
        if raw:
            values[f.name] = _size(f.name, raw) if f.name in _SIZES else _count(f.name, raw)
    return Limits(**values)


@cache
def current() -> Limits:
    """The limits of this process, from its environment (read once)."""
    return from_env(os.environ)


def _count(name: str, raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(_VARIABLES[name], f"{raw!r} is not a positive whole number")
    return int(raw)


def _size(name: str, raw: str) -> int:
    try:
        value = quantity.memory_bytes(raw)
    except ValueError as e:
        raise ConfigError(_VARIABLES[name], str(e)) from None
    if value < 1:
        raise ConfigError(_VARIABLES[name], f"{raw!r} is not a positive size")
    return value
