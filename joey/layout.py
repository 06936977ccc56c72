"""The embedded store: an OCI image layout directory (image-spec image-layout.md).

Blobs live in blobs/sha256/<hex>; index.json lists manifests with org.opencontainers.image.ref.name =
REPOSITORY:TAG (e.g. pipelines/edge-pipeline:<version>), so `skopeo inspect --raw oci:DIR:REPOSITORY:TAG` reads
it. Every blob is verified as it is written; index.json is replaced atomically under a lock.
"""
from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from joey import annotations as ann
from joey import envvars, mediatypes
from joey.descriptor import Descriptor, Manifest
from joey.errors import ConfigError, NotFound
from joey.fsutil import atomic_writer, write_atomic
from joey.verify import Progress, copy_verified


def default_store() -> Path:
    """$JOEY_STORE, else $XDG_DATA_HOME/joey/store, else ~/.local/share/joey/store."""
    if env := os.environ.get(envvars.STORE):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "joey" / "store"


def _open_readable(path: Path) -> IO[bytes]:
    """`path` opened for reading; a file this process may not read is a setting to fix, said in one line (a
    store mounted into a container whose uid cannot read it), not a traceback."""
    try:
        return open(path, "rb")
    except PermissionError:
        error = ConfigError(str(path), f"not readable by uid {os.getuid()} (permission denied)")
        error.hint = "make the store readable to it: chmod -R a+rX STORE"
        raise error from None


class OCILayout:
    """An OCI image layout at `root` as a transfer Target (joey.transfer): the packager's local store and an
    air-gap bundle's contents. Repositories are only names in index.json's ref.name (`REPOSITORY:TAG`); the blobs
    are shared by all of them, so the blob methods take `repository` for the Target shape and ignore it."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    # -- structure
    def init(self) -> OCILayout:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        if not (self.root / "oci-layout").exists():
            write_atomic(self.root / "oci-layout",
                         json.dumps({"imageLayoutVersion": mediatypes.OCI_LAYOUT_VERSION}).encode())
        if not (self.root / "index.json").exists():
            self._write_index([])
        return self

    @property
    def exists(self) -> bool:
        return (self.root / "oci-layout").is_file()

    def blob_path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
            raise NotFound(f"blob {digest} (not a sha256 digest)")
        return self.root / "blobs" / "sha256" / hexd

    # -- blobs
    def blob_exists(self, repository: str, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    @contextmanager
    def read_blob(self, repository: str, digest: str) -> Iterator[IO[bytes]]:
        try:
            f = _open_readable(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} in {self.root}") from None
        with f:
            yield f

    def blob_bytes(self, digest: str) -> bytes:
        with self.read_blob("", digest) as f:
            return f.read()

    def write_blob(self, repository: str, desc: Descriptor, src: IO[bytes] | Path,
                   progress: Progress | None = None) -> bool:
        """Store a blob, verifying size and digest before it is moved into place. False if already there."""
        dest = self.blob_path(desc.digest)
        if dest.is_file():
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(dest) as out:
            if isinstance(src, Path):
                with open(src, "rb") as f:
                    copy_verified(f, out, desc, str(src), progress)
            else:
                copy_verified(src, out, desc, desc.digest, progress)
        return True

    def write_bytes_blob(self, desc: Descriptor, data: bytes) -> bool:
        dest = self.blob_path(desc.digest)
        if dest.is_file():
            return False
        write_atomic(dest, data)
        return True

    # -- manifests and the index
    def read_index(self) -> list[dict[str, Any]]:
        try:
            with _open_readable(self.root / "index.json") as f:
                manifests: list[dict[str, Any]] = json.loads(f.read()).get("manifests", [])
                return manifests
        except FileNotFoundError:
            return []

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": manifests}
        write_atomic(self.root / "index.json", json.dumps(index, indent=2).encode())

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def write_manifest(self, repository: str, tag: str | None, raw: bytes, media_type: str) -> str:
        """Store a manifest (or an image index: a referrers tag) and point REPOSITORY:TAG at it (replacing what
        that name pointed to)."""
        if media_type == mediatypes.OCI_INDEX:
            desc = Descriptor.for_bytes(media_type, raw)
        else:
            desc = Manifest.parse(raw, f"{repository}:{tag}").descriptor
        self.write_bytes_blob(desc, raw)
        if tag is None:
            return desc.digest
        name = f"{repository}:{tag}"
        entry = desc.to_json()
        entry["annotations"] = {ann.REF_NAME: name}
        with self._locked():
            manifests = [e for e in self.read_index()
                         if (e.get("annotations") or {}).get(ann.REF_NAME) != name]
            manifests.append(entry)
            self._write_index(manifests)
        return desc.digest

    def resolve(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """(manifest bytes, media type, digest) of REPOSITORY:TAG or of a digest."""
        if reference.startswith("sha256:"):
            for e in self.read_index():
                if e["digest"] == reference:
                    return self.blob_bytes(reference), e.get("mediaType", mediatypes.OCI_MANIFEST), reference
            if self.blob_exists(repository, reference):
                raw = self.blob_bytes(reference)
                return raw, json.loads(raw).get("mediaType", mediatypes.OCI_MANIFEST), reference
            raise NotFound(f"{repository}@{reference} in {self.root}")
        name = f"{repository}:{reference}"
        for e in self.read_index():
            if (e.get("annotations") or {}).get(ann.REF_NAME) == name:
                return self.blob_bytes(e["digest"]), e.get("mediaType", mediatypes.OCI_MANIFEST), e["digest"]
        raise NotFound(f"{name} in the store {self.root}", hint="`packager list` shows what the store holds")

    def tags(self, repository: str) -> list[str]:
        prefix = f"{repository}:"
        return [n[len(prefix):] for n in self.ref_names() if n.startswith(prefix)]

    def ref_names(self) -> list[str]:
        return [(e.get("annotations") or {}).get(ann.REF_NAME, "") for e in self.read_index()
                if (e.get("annotations") or {}).get(ann.REF_NAME)]

    def entries(self) -> list[tuple[str, str]]:
        """(ref name, manifest digest) for every tagged manifest."""
        return [((e.get("annotations") or {})[ann.REF_NAME], e["digest"]) for e in self.read_index()
                if (e.get("annotations") or {}).get(ann.REF_NAME)]
