"""OCI content descriptors and manifests as plain typed values."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from joey import mediatypes
from joey.errors import BadArtifact


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Descriptor:
        try:
            return cls(d["mediaType"], d["digest"], int(d["size"]), dict(d.get("annotations") or {}),
                       d.get("artifactType"))
        except (KeyError, TypeError, ValueError) as e:
            raise BadArtifact("descriptor", f"malformed descriptor ({e})") from None

    @classmethod
    def for_bytes(cls, media_type: str, data: bytes, **kw: Any) -> Descriptor:
        return cls(media_type, digest_of(data), len(data), **kw)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_bytes(config: Descriptor, layers: list[Descriptor], annotations: dict[str, str],
                   artifact_type: str | None = None, subject: Descriptor | None = None) -> bytes:
    """An OCI image manifest, serialised canonically so equal content gives an equal digest."""
    m: dict[str, Any] = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST}
    if artifact_type:
        m["artifactType"] = artifact_type
    m["config"] = config.to_json()
    m["layers"] = [layer.to_json() for layer in layers]
    if subject is not None:
        m["subject"] = subject.to_json()
    if annotations:
        m["annotations"] = dict(sorted(annotations.items()))
    return json.dumps(m, separators=(",", ":"), sort_keys=False).encode()


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    digest: str
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str]
    artifact_type: str | None

    @classmethod
    def parse(cls, raw: bytes, where: str) -> Manifest:
        try:
            m = json.loads(raw)
        except ValueError:
            raise BadArtifact(where, "manifest is not JSON") from None
        if not isinstance(m, dict) or m.get("schemaVersion") != 2 or "config" not in m:
            raise BadArtifact(where, "not an OCI image manifest")
        return cls(raw=raw, digest=digest_of(raw), media_type=m.get("mediaType", mediatypes.OCI_MANIFEST),
                   config=Descriptor.from_json(m["config"]),
                   layers=tuple(Descriptor.from_json(x) for x in m.get("layers", [])),
                   annotations=dict(m.get("annotations") or {}), artifact_type=m.get("artifactType"))

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw), artifact_type=self.artifact_type)
