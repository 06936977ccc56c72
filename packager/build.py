"""Build: spec -> artifact -> the embedded store (or straight to any target)."""
from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from joey import mediatypes
from joey.errors import NotFound
from joey.layout import OCILayout, default_store
from joey.names import Ref, pipeline_repository
from joey.transfer import CopyResult, copy
from packager.artifact import Artifact, build_artifact
from packager.spec import LoadedSpec, load_spec


class ArtifactSource:
    """A freshly built artifact seen as a read-only target: blobs come straight from the model files,
    so publishing to a registry never copies a model through the local store first."""

    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self._files = {d.digest: p for d, p in artifact.layers}
        self.repository = pipeline_repository("", artifact.config.name)

    def resolve(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        return self.artifact.manifest, mediatypes.OCI_MANIFEST, self.artifact.digest

    @contextmanager
    def read_blob(self, repository: str, digest: str):
        if digest == self.artifact.config_descriptor.digest:
            yield io.BytesIO(self.artifact.config_bytes)
            return
        path = self._files.get(digest)
        if path is None:
            raise NotFound(f"blob {digest} in the built artifact")
        with open(path, "rb") as f:
            yield f


@dataclass(frozen=True)
class Built:
    loaded: LoadedSpec
    artifact: Artifact
    ref: Ref            # where it was written
    copy: CopyResult

    @property
    def digest(self) -> str:
        return self.artifact.digest


def build(spec_path: str | Path, *, store: Path | None = None, source: str | None = None,
          revision: str | None = None) -> Built:
    """Load the spec, build the artifact and write it into the local OCI layout as pipelines/NAME:VERSION."""
    loaded = load_spec(spec_path)
    artifact = build_artifact(loaded, source=source, revision=revision)
    layout = OCILayout(store or default_store()).init()
    src = ArtifactSource(artifact)
    result = copy(src, src.repository, artifact.config.version, layout, src.repository, artifact.config.version)
    ref = Ref(repository=src.repository, tag=artifact.config.version, layout=layout.root)
    return Built(loaded, artifact, ref, result)

