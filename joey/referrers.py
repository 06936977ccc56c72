"""Artifacts attached to a manifest (signatures, provenance), found again from the manifest's digest.

Each attachment is one OCI image manifest whose `subject` is the manifest it is about, so a registry with the
OCI 1.1 referrers API (GET /v2/<repo>/referrers/<digest>) lists it. The same manifest is also tagged with
cosign's scheme, `sha256-<hex>.sig` / `sha256-<hex>.att` in the subject's repository: that is what works on
registries without the API (distribution 2.8 answers 404) and in an OCI layout, and what cosign reads.
Its config is the image config cosign (go-containerregistry) writes for such an image, so cosign can read it.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

from joey import mediatypes
from joey.descriptor import Descriptor, Manifest, manifest_bytes
from joey.errors import BadArtifact, DigestMismatch, NotFound, RegistryError, SizeMismatch
from joey.transfer import Target
from joey.verify import copy_verified

SIGNATURE = "sig"
ATTESTATION = "att"
SUFFIXES = (SIGNATURE, ATTESTATION)

# cosign's artifactType for each kind, as its OCI 1.1 mode writes them.
ARTIFACT_TYPES = {
    SIGNATURE: "application/vnd.dev.cosign.artifact.sig.v1+json",
    ATTESTATION: "application/vnd.dev.cosign.artifact.att.v1+json",
}
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
MAX_LAYER = 4 * 2**20   # a signature payload or an attestation is a few KiB; more is not one of ours


def fallback_tag(digest: str, suffix: str) -> str:
    """cosign's tag for what is attached to `digest`: sha256:<hex> -> sha256-<hex>.<suffix>."""
    algo, _, hexd = digest.partition(":")
    return f"{algo}-{hexd}.{suffix}"


def image_config(layers: list[Descriptor]) -> bytes:
    """The config go-containerregistry gives an image built from scratch out of these (uncompressed) layers."""
    zero = "0001-01-01T00:00:00Z"
    return json.dumps({"architecture": "", "created": zero, "history": [{"created": zero} for _ in layers],
                       "os": "", "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layers]},
                       "config": {}}, separators=(",", ":")).encode()


def attach(target: Target, repository: str, subject: Descriptor, layers: list[tuple[Descriptor, bytes]],
           suffix: str) -> str:
    """Store an attachment of `subject` (blobs first, then the manifest under its fallback tag); its digest."""
    config = image_config([d for d, _ in layers])
    config_desc = Descriptor.for_bytes(OCI_IMAGE_CONFIG, config)
    for desc, data in [(config_desc, config), *layers]:
        target.write_blob(repository, desc, io.BytesIO(data))
    raw = manifest_bytes(config_desc, [d for d, _ in layers], {}, artifact_type=ARTIFACT_TYPES[suffix],
                         subject=Descriptor(subject.media_type, subject.digest, subject.size))
    return target.write_manifest(repository, fallback_tag(subject.digest, suffix), raw, mediatypes.OCI_MANIFEST)


def attached(target: Target, repository: str, digest: str, suffix: str) -> Manifest | None:
    """The attachment tagged with cosign's scheme for `digest`, or None."""
    try:
        raw, _, _ = target.resolve(repository, fallback_tag(digest, suffix))
    except NotFound:
        return None
    return Manifest.parse(raw, f"{repository}:{fallback_tag(digest, suffix)}")


def read_layer(target: Target, repository: str, desc: Descriptor) -> bytes:
    """A small layer, checked against its descriptor. Altered, missing or oversized content is a BadArtifact."""
    where = f"{repository}@{desc.digest}"
    if desc.size > MAX_LAYER:
        raise BadArtifact(where, f"an attached layer of {desc.size} bytes is larger than {MAX_LAYER}")
    buf = io.BytesIO()
    try:
        with target.read_blob(repository, desc.digest) as f:
            copy_verified(f, buf, desc, where)
    except (DigestMismatch, SizeMismatch) as e:
        raise BadArtifact(where, f"attached content was altered ({e})") from None
    except NotFound:
        raise BadArtifact(where, "an attached blob is missing") from None
    except RegistryError as e:
        if e.status != 404:
            raise
        raise BadArtifact(where, "an attached blob is missing") from None
    return buf.getvalue()


@dataclass(frozen=True)
class Referrer:
    """One manifest attached to a subject, and how it was found."""

    digest: str
    artifact_type: str | None
    found_via: list[str] = field(default_factory=list)   # "referrers API" and/or "tag sha256-….sig"
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"digest": self.digest, "artifactType": self.artifact_type, "kind": kind(self.artifact_type),
                "found_via": self.found_via, "annotations": self.annotations}


def kind(artifact_type: str | None) -> str:
    return {ARTIFACT_TYPES[SIGNATURE]: "signature", ARTIFACT_TYPES[ATTESTATION]: "provenance",
            "application/vnd.joey.publish.v1+json": "publish record"}.get(artifact_type or "", "other")


def find(target: Target, repository: str, digest: str) -> list[Referrer]:
    """Everything attached to `digest`: from the referrers API when the target answers it, and from the tags."""
    found: dict[str, Referrer] = {}
    for d in _listed(target, repository, digest):
        found[d["digest"]] = Referrer(d["digest"], d.get("artifactType"), ["referrers API"],
                                      dict(d.get("annotations") or {}))
    for suffix in SUFFIXES:
        m = attached(target, repository, digest, suffix)
        if m is None:
            continue
        via = f"tag {fallback_tag(digest, suffix)}"
        if m.digest in found:
            found[m.digest].found_via.append(via)
        else:
            found[m.digest] = Referrer(m.digest, m.artifact_type, [via], m.annotations)
    return list(found.values())


def _listed(target: Target, repository: str, digest: str) -> list[dict]:
    """The referrers API's answer; [] from a layout (it has only the tags) or a registry without the API
    (404, or a 4xx some registries give routes they do not know)."""
    listing = getattr(target, "referrers", None)
    if listing is None:
        return []
    try:
        return listing(digest, repository)
    except RegistryError as e:
        if 400 <= e.status < 500 and e.status not in (401, 403):
            return []
        raise
