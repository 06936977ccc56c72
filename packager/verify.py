"""Streamed verification: a blob is checked for size as it arrives and for its digest at the end."""
from __future__ import annotations

import hashlib
from typing import IO

from .descriptor import Descriptor
from .errors import DigestMismatch, SizeMismatch

CHUNK = 4 * 2**20


def copy_verified(src: IO[bytes], out: IO[bytes] | None, desc: Descriptor, what: str, progress=None) -> None:
    """Copy `src` to `out` (or only read it when None). Raises before the caller renames anything into place."""
    h, n = hashlib.sha256(), 0
    while chunk := src.read(CHUNK):
        n += len(chunk)
        if n > desc.size:
            raise SizeMismatch(what, desc.size, n)
        h.update(chunk)
        if out is not None:
            out.write(chunk)
        if progress:
            progress(len(chunk))
    if n != desc.size:
        raise SizeMismatch(what, desc.size, n)
    actual = "sha256:" + h.hexdigest()
    if actual != desc.digest:
        raise DigestMismatch(what, desc.digest, actual)
