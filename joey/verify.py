"""Streamed verification: a blob is checked for size as it arrives and for its digest at the end."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO

from joey.descriptor import Descriptor
from joey.errors import DigestMismatch, SizeMismatch

CHUNK = 4 * 2**20

# Fed each chunk's size as it passes (a progress bar's advance); None shows nothing.
Progress = Callable[[int], None]


def copy_verified(src: IO[bytes], out: IO[bytes] | None, desc: Descriptor, what: str,
                  progress: Progress | None = None) -> None:
    """Copy `src` to `out` (or only read it when None). Raises before the caller renames anything into place.

    A blob larger than one chunk is written on a second thread, one chunk behind the reading and hashing
    (all three release the GIL), so a pull costs about the slowest of network, sha256 and disk, not their sum.
    """
    if out is None or desc.size <= CHUNK:
        _copy(src, out.write if out is not None else None, desc, what, progress)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="blob-writer") as writer:
        pending: list[Future[int]] = []

        def write(chunk: bytes) -> None:
            if pending:
                pending.pop().result()   # at most one chunk in flight: memory stays at two chunks
            pending.append(writer.submit(out.write, chunk))

        _copy(src, write, desc, what, progress)
        if pending:
            pending.pop().result()


def _copy(src: IO[bytes], write: Callable[[bytes], object] | None, desc: Descriptor, what: str,
          progress: Progress | None) -> None:
    h, n = hashlib.sha256(), 0
    while chunk := src.read(CHUNK):
        n += len(chunk)
        if n > desc.size:
            raise SizeMismatch(what, desc.size, n)
        h.update(chunk)
        if write is not None:
            write(chunk)
        if progress:
            progress(len(chunk))
    if n != desc.size:
        raise SizeMismatch(what, desc.size, n)
    actual = "sha256:" + h.hexdigest()
    if actual != desc.digest:
        raise DigestMismatch(what, desc.digest, actual)
