"""Atomic file writes and safe paths: nothing half-written, nothing outside its directory."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from joey.errors import UnsafePath


@contextmanager
def atomic_writer(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Write to a temp file beside `path`, fsync, then rename over it; on error the temp file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_atomic(path: Path, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def safe_join(root: Path, title: str) -> Path:
    """`root/title`, refusing absolute titles, `..`, and anything resolving outside `root` (symlinks too)."""
    if not title or title.startswith(("/", "\\")) or "\0" in title or os.path.isabs(title):
        raise UnsafePath(title)
    parts = Path(title).parts
    if any(p in ("..", "") for p in parts):
        raise UnsafePath(title)
    root_resolved = root.resolve()
    target = (root_resolved / title).resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise UnsafePath(title)
    return target
