"""What an attacker (or an accident) does to a signed publish, done for real in a registry or an OCI layout."""
from __future__ import annotations

import io
import json

from joey import mediatypes
from joey.descriptor import Descriptor, digest_of
from joey.referrers import SIGNATURE, fallback_tag, index_bytes, index_tag, register
from joey.transfer import copy


def signature_manifest(target, repo: str, digest: str) -> bytes:
    raw, _, _ = target.resolve(repo, fallback_tag(digest, SIGNATURE))
    return raw


def flip_payload_byte(target, repo: str, digest: str) -> bytes:
    """Replace the signed payload by a copy with one bit flipped, keeping the signature; returns the original
    signature manifest (to put back with `restore_signature`)."""
    original = signature_manifest(target, repo, digest)
    manifest = json.loads(original)
    layer = manifest["layers"][0]
    with target.read_blob(repo, layer["digest"]) as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0x01
    altered = Descriptor.for_bytes(layer["mediaType"], bytes(data))
    target.write_blob(repo, altered, io.BytesIO(bytes(data)))
    layer["digest"], layer["size"] = altered.digest, altered.size
    altered_raw = json.dumps(manifest).encode()
    target.write_manifest(repo, fallback_tag(digest, SIGNATURE), altered_raw, mediatypes.OCI_MANIFEST)
    register(target, repo, altered_raw)   # and in the referrers index, in place of the original
    return original


def restore_signature(target, repo: str, digest: str, raw: bytes) -> None:
    target.write_manifest(repo, fallback_tag(digest, SIGNATURE), raw, mediatypes.OCI_MANIFEST)
    register(target, repo, raw)


def move_tag(target, repo: str, tag: str, from_repo: str, from_tag: str) -> str:
    """Point repo:tag at what from_repo:from_tag holds (as a re-push under the same tag does); the new digest."""
    return copy(target, from_repo, from_tag, target, repo, tag).digest


def replay_signature(target, repo: str, signed_digest: str, new_digest: str) -> None:
    """Copy the signature of `signed_digest` to where the signature of `new_digest` is looked up: its cosign tag
    and, in place of whatever was listed there, its referrers index."""
    raw = signature_manifest(target, repo, signed_digest)
    target.write_manifest(repo, fallback_tag(new_digest, SIGNATURE), raw, mediatypes.OCI_MANIFEST)
    entry = {"mediaType": mediatypes.OCI_MANIFEST, "digest": digest_of(raw), "size": len(raw),
             "artifactType": json.loads(raw)["artifactType"]}
    target.write_manifest(repo, index_tag(new_digest), index_bytes([entry]), mediatypes.OCI_INDEX)
