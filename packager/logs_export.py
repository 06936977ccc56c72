"""export_logs: a pipeline's logs from Ops into JSON-lines files PREFIX-1.json, PREFIX-2.json, ... (seed 003's
`pipeline.export_logs`), read back with `pd.read_json(path, orient="records", lines=True)`.

All pages are fetched into a staging directory first; only then are the files renamed into place and older
PREFIX-N.json beyond the new count removed. An export that fails midway leaves the directory as it was.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from joey.errors import ConfigError
from joey.fsutil import atomic_writer
from joey.opsclient import OpsClient

DEFAULT_RECORDS_PER_FILE = 1000
_PREFIX = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def export_logs(client: OpsClient, pipeline: str, directory: Path, *, file_prefix: str | None = None,
                limit: int | None = None, partition: str | None = None, dataset: Sequence[str] | None = None,
                records_per_file: int = DEFAULT_RECORDS_PER_FILE) -> list[Path]:
    """Write up to `limit` records (all when None), `records_per_file` per file; the files written."""
    if records_per_file < 1:
        raise ConfigError("records per file", "must be at least 1")
    prefix = file_prefix or pipeline
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError("file prefix", f"{prefix!r}: use letters, digits, '.', '_' and '-' only")
    directory.mkdir(parents=True, exist_ok=True)
    records = client.iter_logs(pipeline, partition=partition, dataset=dataset,
                               page_size=min(records_per_file, 10_000))
    if limit is not None:
        records = itertools.islice(records, limit)
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".export-"))
    try:
        staged: list[Path] = []
        for n in itertools.count(1):
            chunk = list(itertools.islice(records, records_per_file))
            if not chunk:
                break
            path = staging / f"{prefix}-{n}.json"
            with atomic_writer(path, "w") as f:
                f.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in chunk)
            staged.append(path)
        written = []
        for path in staged:
            os.replace(path, directory / path.name)
            written.append(directory / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    stale = re.compile(rf"{re.escape(prefix)}-([0-9]+)\.json")
    for old in directory.iterdir():
        m = stale.fullmatch(old.name)
        if m and int(m.group(1)) > len(written):
            old.unlink()
    return written
