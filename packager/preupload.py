"""Publishing large models sooner: their blobs go up while onnx still inspects them (publish's first step)."""
from __future__ import annotations

import io
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

from joey import mediatypes
from joey.descriptor import Descriptor
from joey.transfer import ProgressFactory, Target
from packager.onnxmodel import digests_in_progress, is_inspected, sha256_file
from packager.spec import LoadedSpec, load_spec

PREUPLOAD_MIN_BYTES = 8 * 2**20


def load_while_uploading(spec_path: str | Path, target: Target, repo_of: Callable[[str], str],
                         progress: ProgressFactory) -> LoadedSpec:
    """load_spec, with large, not yet inspected model files already going up to `target` (in the repository
    `repo_of(pipeline name)`) while onnx checks them.

    Inspection parses the whole model (onnx's checker releases the GIL); the upload is bound by the registry.
    One after the other they add up, so the blobs start as soon as the spec's structure is known. A blob is
    content-addressed and nothing refers to it until the manifest is pushed, after every check: a spec that
    then fails leaves no tag and no manifest, only blobs for the registry's garbage collection.
    """
    shape = load_spec(spec_path, inspect=False)   # names and paths; a malformed spec fails here, before uploads
    repo = repo_of(shape.spec.name)
    big = sorted({p for p in shape.model_paths if p.stat().st_size >= PREUPLOAD_MIN_BYTES and not is_inspected(p)})
    if not big:
        return load_spec(spec_path)
    cancel = threading.Event()
    with ThreadPoolExecutor(2 * len(big)) as pool, \
            progress(sum(p.stat().st_size for p in big), f"push {repo}") as advance:
        hashes = {p: pool.submit(sha256_file, p) for p in big}   # one hash each, shared with the inspection
        uploads = [pool.submit(_upload_file, target, repo, p, hashes[p], cancel, advance) for p in big]
        try:
            with digests_in_progress(hashes):
                loaded = load_spec(spec_path)
        except BaseException:
            cancel.set()   # the uploads stop at their next chunk; no thread outlives this call
            wait(uploads)
            raise
        for u in uploads:
            u.result()
    return loaded


class _Cancelled(Exception):
    pass


class _CancellableFile(io.RawIOBase):
    """A model file read for an upload that stops as soon as `cancel` is set."""

    def __init__(self, path: Path, cancel: threading.Event):
        self._f, self._cancel = open(path, "rb"), cancel

    def read(self, n: int = -1) -> bytes:
        if self._cancel.is_set():
            raise _Cancelled()
        return self._f.read(n)

    def close(self) -> None:
        self._f.close()
        super().close()


def _upload_file(target: Target, repo: str, path: Path, hashed: Future[tuple[str, int]], cancel: threading.Event,
                 advance: Callable[[int], None] | None) -> None:
    sha, size = hashed.result()
    with _CancellableFile(path, cancel) as f:
        target.write_blob(repo, Descriptor(mediatypes.MODEL_WEIGHT_RAW, f"sha256:{sha}", size), f, advance)
