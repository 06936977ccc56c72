"""Artifacts attached to a manifest (signatures, provenance, SBOMs, records), listed and found again from the
manifest's digest, the OCI 1.1 way on every registry.

Each attachment is one OCI image manifest whose `subject` is the manifest it is about. A registry with the
referrers API (GET /v2/<repo>/referrers/<digest>) lists it by itself. On one without (distribution 2.8 answers
404), the distribution spec has the client keep the referrers tag `sha256-<hex>`: an image index listing each
referrer's descriptor with its artifactType and annotations, updated read-modify-write by `register`. The same
index is kept in an OCI layout. cosign's own tags (`sha256-<hex>.sig` / `.att` / `.sbom`) are written too, for
cosign users; their config is the image config cosign (go-containerregistry) writes, so cosign can read them.
Reading (`find`) prefers the API, then the index, and adds what cosign's tags hold.
"""
from __future__ import annotations

import io
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from joey import mediatypes
from joey.descriptor import Descriptor, Manifest, digest_of, manifest_bytes
from joey.errors import BadArtifact, DigestMismatch, NotFound, ReferrersContention, RegistryError, SizeMismatch
from joey.transfer import Target, copy
from joey.verify import copy_verified

SIGNATURE = "sig"
ATTESTATION = "att"
SBOM = "sbom"
SUFFIXES = (SIGNATURE, ATTESTATION, SBOM)

# cosign's artifactType for each kind, as its OCI 1.1 mode writes them (an SBOM's is its own media type).
ARTIFACT_TYPES = {
    SIGNATURE: "application/vnd.dev.cosign.artifact.sig.v1+json",
    ATTESTATION: "application/vnd.dev.cosign.artifact.att.v1+json",
    SBOM: mediatypes.CYCLONEDX_JSON,
}
PUBLISH_RECORD = "application/vnd.joey.publish.v1+json"   # joey.record's artifactType, named here for `kind`
KINDS = {ARTIFACT_TYPES[SIGNATURE]: "signature", ARTIFACT_TYPES[ATTESTATION]: "provenance",
         ARTIFACT_TYPES[SBOM]: "sbom", PUBLISH_RECORD: "publish record",
         mediatypes.SIGSTORE_BUNDLE: "model signature"}
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
MAX_LAYER = 4 * 2**20   # a signature payload, an attestation or an SBOM is a few KiB; more is not one of ours
MAX_INDEX = 4 * 2**20
# Without a conditional PUT, a writer learns it lost a race only by reading again: it waits a moment, looks for
# its entry and writes again when it is gone. The moment is a few of the registry's own round trips (a racing
# writer's read-modify-write takes about three), jittered so that two racing writers drift apart: a loopback
# registry costs milliseconds per publish, a distant one waits as long as its latency needs.
INDEX_ATTEMPTS = 12
SETTLE_ROUND_TRIPS = (3.0, 6.0)
SETTLE_MIN_S = 0.005

Replaces = Callable[[dict[str, Any], dict[str, Any]], bool]


def fallback_tag(digest: str, suffix: str) -> str:
    """cosign's tag for what is attached to `digest`: sha256:<hex> -> sha256-<hex>.<suffix>."""
    return f"{index_tag(digest)}.{suffix}"


def index_tag(digest: str) -> str:
    """The distribution spec's referrers tag of `digest`: sha256:<hex> -> sha256-<hex>."""
    algo, _, hexd = digest.partition(":")
    return f"{algo}-{hexd}"


def image_config(layers: list[Descriptor]) -> bytes:
    """The config go-containerregistry gives an image built from scratch out of these (uncompressed) layers."""
    zero = "0001-01-01T00:00:00Z"
    return json.dumps({"architecture": "", "created": zero, "history": [{"created": zero} for _ in layers],
                       "os": "", "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layers]},
                       "config": {}}, separators=(",", ":")).encode()


# ---------------------------------------------------------------- writing

def same_type(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """The default for `register`: a subject has one current referrer of each artifactType (a new signature
    manifest carries the old signatures along; a record or an SBOM is rewritten whole)."""
    return old.get("artifactType") == new.get("artifactType")


def same_type_and(*annotations: str) -> Replaces:
    """Replace only a referrer of the same artifactType whose `annotations` match too (one per signing key)."""
    def replaces(old: dict[str, Any], new: dict[str, Any]) -> bool:
        a, b = old.get("annotations") or {}, new.get("annotations") or {}
        return same_type(old, new) and all(a.get(k) == b.get(k) for k in annotations)
    return replaces


def attach(target: Target, repository: str, subject: Descriptor, layers: list[tuple[Descriptor, bytes]],
           suffix: str) -> str:
    """Store a cosign-style attachment of `subject` (blobs, the manifest under its cosign tag) and list it."""
    config = image_config([d for d, _ in layers])
    config_desc = Descriptor.for_bytes(OCI_IMAGE_CONFIG, config)
    for desc, data in [(config_desc, config), *layers]:
        target.write_blob(repository, desc, io.BytesIO(data))
    raw = manifest_bytes(config_desc, [d for d, _ in layers], {}, artifact_type=ARTIFACT_TYPES[suffix],
                         subject=Descriptor(subject.media_type, subject.digest, subject.size))
    digest = target.write_manifest(repository, fallback_tag(subject.digest, suffix), raw, mediatypes.OCI_MANIFEST)
    register(target, repository, raw)
    return digest


def attach_artifact(target: Target, repository: str, subject: Descriptor, artifact_type: str,
                    layers: list[tuple[Descriptor, bytes]], *, annotations: dict[str, str] | None = None,
                    replaces: Replaces = same_type) -> str:
    """Store an OCI 1.1 artifact about `subject` (empty config, untagged) and list it; its digest."""
    empty = Descriptor.for_bytes(mediatypes.OCI_EMPTY, b"{}")
    for desc, data in [(empty, b"{}"), *layers]:
        target.write_blob(repository, desc, io.BytesIO(data))
    raw = manifest_bytes(empty, [d for d, _ in layers], annotations or {}, artifact_type=artifact_type,
                         subject=Descriptor(subject.media_type, subject.digest, subject.size))
    digest = target.write_manifest(repository, None, raw, mediatypes.OCI_MANIFEST)
    register(target, repository, raw, replaces=replaces)
    return digest


def register(target: Target, repository: str, raw: bytes, *, replaces: Replaces = same_type) -> None:
    """List the pushed manifest `raw` among its subject's referrers: nothing to do where the referrers API lists
    it already; otherwise add it to the subject's index tag, dropping what it `replaces`.

    Safe against concurrent writers as far as a registry without conditional PUT allows: the index is read
    again just before writing (a change means start over), and after writing, once settled, the entry must be
    there, else the update is redone (another writer's read-modify-write dropped it).
    """
    m = json.loads(raw)
    subject = m["subject"]["digest"]
    if _listed(target, repository, subject) is not None:
        return
    entry = {"mediaType": m.get("mediaType", mediatypes.OCI_MANIFEST), "digest": digest_of(raw), "size": len(raw),
             "artifactType": m.get("artifactType") or m["config"]["mediaType"]}
    if m.get("annotations"):
        entry["annotations"] = m["annotations"]
    tag = index_tag(subject)
    for _ in range(INDEX_ATTEMPTS):
        try:
            seen, entries = read_index(target, repository, subject)
            kept = [e for e in entries if e.get("digest") != entry["digest"] and not replaces(e, entry)]
            if read_index(target, repository, subject)[0] != seen:
                continue
            started = time.monotonic()
            target.write_manifest(repository, tag, index_bytes([*kept, entry]), mediatypes.OCI_INDEX)
            _settle(time.monotonic() - started)
            if any(e.get("digest") == entry["digest"] for e in read_index(target, repository, subject)[1]):
                return
        except RegistryError as e:
            # distribution 2.8 answers 500 to a read of a tag that another writer is moving at that instant
            if e.status < 500:
                raise
            _settle(SETTLE_MIN_S * 10)
    raise ReferrersContention(f"{repository}:{tag}", INDEX_ATTEMPTS)


def _settle(round_trip_s: float) -> None:
    time.sleep(max(SETTLE_MIN_S, round_trip_s) * random.uniform(*SETTLE_ROUND_TRIPS))


def index_bytes(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries},
                      separators=(",", ":")).encode()


def read_index(target: Target, repository: str, digest: str) -> tuple[str | None, list[dict[str, Any]]]:
    """(the index tag's digest, its entries) for `digest`; (None, []) while there is none."""
    tag = index_tag(digest)
    try:
        raw, _, found = target.resolve(repository, tag)
    except NotFound:
        return None, []
    where = f"{repository}:{tag}"
    if len(raw) > MAX_INDEX:
        raise BadArtifact(where, f"a referrers index of {len(raw)} bytes is larger than {MAX_INDEX}")
    try:
        index = json.loads(raw)
        entries = index["manifests"]
    except (ValueError, KeyError, TypeError):
        raise BadArtifact(where, "the referrers tag is not an OCI image index") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "digest" in e for e in entries):
        raise BadArtifact(where, "the referrers index's manifests are not descriptors")
    return found, entries


# ---------------------------------------------------------------- reading

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
    found_via: list[str] = field(default_factory=list)   # "referrers API", "index sha256-…", "tag sha256-….sig"
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "artifactType": self.artifact_type, "kind": kind(self.artifact_type),
                "found_via": self.found_via, "annotations": self.annotations}


def kind(artifact_type: str | None) -> str:
    return KINDS.get(artifact_type or "", "other")


def find(target: Target, repository: str, digest: str) -> list[Referrer]:
    """Everything attached to `digest`: from the referrers API when the target answers it, else from the
    referrers index, and from cosign's tags."""
    found: dict[str, Referrer] = {}
    listed = _listed(target, repository, digest)
    via = "referrers API" if listed is not None else f"index {index_tag(digest)}"
    for d in listed if listed is not None else read_index(target, repository, digest)[1]:
        found[d["digest"]] = Referrer(d["digest"], d.get("artifactType"), [via], dict(d.get("annotations") or {}))
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


def _listed(target: Target, repository: str, digest: str) -> list[dict[str, Any]] | None:
    """The referrers API's answer; None from a layout (it has only tags) or a registry without the API (404,
    or a 4xx some registries give routes they do not know)."""
    listing = getattr(target, "referrers", None)
    if listing is None:
        return None
    try:
        answer: list[dict[str, Any]] | None = listing(digest, repository)
        return answer
    except RegistryError as e:
        if 400 <= e.status < 500 and e.status not in (401, 403):
            return None
        raise


def copy_referrers(src: Target, src_repo: str, dst: Target, dst_repo: str, digest: str, *,
                   leave: tuple[str, ...] = ()) -> list[str]:
    """Copy what is attached to `digest` (it must be in `dst` already), but referrers of the artifactTypes in
    `leave`, and list it there; the digests copied. A referrer keeps the cosign tag it was found under."""
    out = []
    for r in find(src, src_repo, digest):
        if r.artifact_type in leave:
            continue
        tags = [v.removeprefix("tag ") for v in r.found_via if v.startswith("tag ")]
        copy(src, src_repo, r.digest, dst, dst_repo, tags[0] if tags else None)
        register(dst, dst_repo, src.resolve(src_repo, r.digest)[0])
        out.append(r.digest)
    return out
