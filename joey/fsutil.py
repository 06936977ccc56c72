"""Atomic file writes and safe paths: nothing half-written, nothing outside its directory.

Files get the mode an open() would give them (0666 less the process umask: 0644 under the usual 022), so a
store, a pull or an export is readable by whoever the umask lets read it (the engine image's uid, when a store
is mounted into it); secrets ask for `private` (0600) instead.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from joey.errors import UnsafePath


def umask() -> int:
    """The process umask, read without changing it: os.umask can only set it, and setting it even for a moment
    would race with every other thread creating files."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)   # no /proc: the only other way to read it
    os.umask(current)
    return current


@contextmanager
def atomic_writer(path: Path, mode: str = "wb", *, private: bool = False) -> Iterator[IO[Any]]:
    """Write to a temp file beside `path`, fsync, then rename over it; on error the temp file is removed.
    The file gets the umask's mode, or 0600 when `private`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")   # 0600 until chmod
    try:
        if not private:
            os.fchmod(fd, 0o666 & ~umask())
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


def write_atomic(path: Path, data: bytes, *, private: bool = False) -> None:
    with atomic_writer(path, private=private) as f:
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
