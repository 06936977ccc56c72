"""Signing and verifying published manifests with a key pair, in cosign's key-based format (docs/signing.md).

A signature is a simple-signing payload naming the repository and the manifest digest, signed with ECDSA P-256
(or Ed25519) over SHA-256, stored as an attachment of that manifest (packager.referrers: subject + the tag
`sha256-<hex>.sig`). `verify` is the one check the CLI and the engine share: some signature verifies with the
key, its payload names the digest the reference resolves to NOW (a moved tag fails) and the same repository.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from joey import __version__
from joey import referrers as refs
from joey.descriptor import Descriptor, Manifest
from joey.errors import BadArtifact, ConfigError, JoeyError
from joey.fsutil import atomic_writer
from joey.names import Ref
from joey.transfer import Target

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"


class SignatureError(JoeyError):
    """A manifest that is unsigned, signed by another key, altered, or no longer what its tag names."""

    exit_code = 5
    http_status = 502

    def __init__(self, what: str, digest: str, problem: str):
        self.what, self.digest, self.problem = what, digest, problem
        super().__init__(f"signature check failed for {what} ({digest}): {problem}")


# ---------------------------------------------------------------- keys

@dataclass(frozen=True)
class PublicKey:
    key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

    @property
    def fingerprint(self) -> str:
        """sha256 of the DER SubjectPublicKeyInfo: how messages name a key."""
        der = self.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        h = hashes.Hash(hashes.SHA256())
        h.update(der)
        return "sha256:" + h.finalize().hex()

    def pem(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verifies(self, signature: bytes, data: bytes) -> bool:
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, data)
            else:
                self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key())

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 (ASN.1 DER, as cosign writes it) or Ed25519 over `data`."""
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(data)
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


def generate_keypair(prefix: Path) -> tuple[Path, Path]:
    """Write PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (SubjectPublicKeyInfo PEM, cosign.pub's format)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise ConfigError("--out", f"{path} exists; refusing to overwrite a key")
    with atomic_writer(key_path, private=True) as f:   # 0600: the key is never readable by others
        f.write(private)
    with atomic_writer(pub_path) as f:
        f.write(SigningKey(key).public.pem())
    os.chmod(pub_path, 0o644)
    return key_path, pub_path


def load_signing_key(path: str | Path, what: str = "--sign-key") -> SigningKey:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(what, f"cannot read {path}: {e.strerror or e}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(what, f"{path} is not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, _PRIVATE_KINDS) or not _on_p256(key):
        raise ConfigError(what, f"{path} is a {type(key).__name__}; use ECDSA P-256 (`packager keygen`) or Ed25519")
    return SigningKey(key)


def load_public_key(text_or_path: str, what: str = "--key") -> PublicKey:
    """A PEM public key given inline (`-----BEGIN PUBLIC KEY-----…`) or as a file path."""
    if text_or_path.lstrip().startswith("-----BEGIN"):
        data, source = text_or_path.strip().encode(), "the PEM text"
    else:
        try:
            data, source = Path(text_or_path).read_bytes(), text_or_path
        except OSError as e:
            raise ConfigError(what, f"neither PEM text nor a readable file: {text_or_path}: "
                                    f"{e.strerror or e}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise ConfigError(what, f"{source} is not a PEM public key ({e})") from None
    if not isinstance(key, _PUBLIC_KINDS) or not _on_p256(key):
        raise ConfigError(what, f"{source} is a {type(key).__name__}; expected ECDSA P-256 or Ed25519")
    return PublicKey(key)


# The key kinds Joey signs and verifies with: ECDSA (on P-256 only, see _on_p256) and Ed25519.
_PRIVATE_KINDS = (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
_PUBLIC_KINDS = (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)


def _on_p256(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePublicKey
             | ed25519.Ed25519PublicKey) -> bool:
    """False for an ECDSA key on a curve other than P-256 (cosign's and our keygen's curve)."""
    return not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) or \
        isinstance(key.curve, ec.SECP256R1)


# ---------------------------------------------------------------- DSSE (attestations)

def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what an envelope's signature is over."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def dsse_envelope(payload_type: str, payload: bytes, key: SigningKey) -> bytes:
    sig = base64.b64encode(key.sign(pae(payload_type, payload))).decode()
    # keyid "" as cosign writes it: a verifier is given the key, it does not look it up.
    return json.dumps({"payloadType": payload_type, "payload": base64.b64encode(payload).decode(),
                       "signatures": [{"keyid": "", "sig": sig}]}, separators=(",", ":")).encode()


def dsse_open(envelope: bytes, key: PublicKey | None) -> tuple[str, bytes, bool | None]:
    """(payloadType, payload, verified): verified is None without a key, else whether a signature verifies."""
    try:
        env = json.loads(envelope)
        payload = base64.b64decode(env["payload"], validate=True)
        sigs = [base64.b64decode(s["sig"], validate=True) for s in env.get("signatures") or []]
        payload_type = str(env["payloadType"])
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise BadArtifact("DSSE envelope", f"malformed ({type(e).__name__}: {e})") from None
    if key is None:
        return payload_type, payload, None
    return payload_type, payload, any(key.verifies(s, pae(payload_type, payload)) for s in sigs)


# ---------------------------------------------------------------- signing

def identity(ref: Ref) -> str:
    """The payload's docker-reference: HOST/REPOSITORY in a registry (as cosign writes it), REPOSITORY in a layout."""
    return f"{ref.host}/{ref.repository}" if ref.host else ref.repository


def payload(docker_reference: str, digest: str) -> bytes:
    return json.dumps({
        "critical": {"identity": {"docker-reference": docker_reference},
                     "image": {"docker-manifest-digest": digest},
                     "type": SIGNATURE_TYPE},
        "optional": {"creator": f"joey packager {__version__}", "timestamp": int(time.time())},
    }, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Signed:
    reference: str        # what was signed: its docker-reference with the tag (or @digest) it was named by
    digest: str           # the manifest digest signed
    identity: str         # the payload's docker-reference
    signature: str        # the signature manifest's digest
    tag: str              # its cosign tag

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def sign(target: Target, repository: str, reference: str, key: SigningKey, *, docker_reference: str) -> Signed:
    """Sign what `reference` resolves to. Signatures by other keys stay (cosign appends); an older one by this
    key is replaced, so signing twice leaves one."""
    raw, media_type, digest = target.resolve(repository, reference)
    subject = Descriptor(media_type, digest, len(raw))
    data = payload(docker_reference, digest)
    found, _ = _signature_layers(target, repository, digest)
    layers = [(d, b) for d, b in found if not _verifies(key.public, d, b)]
    sig = base64.b64encode(key.sign(data)).decode()
    layers.append((Descriptor.for_bytes(SIMPLE_SIGNING, data, annotations={SIGNATURE_ANNOTATION: sig}), data))
    manifest = refs.attach(target, repository, subject, layers, refs.SIGNATURE)
    return Signed(subject_name(docker_reference, reference), digest, docker_reference, manifest,
                  refs.fallback_tag(digest, refs.SIGNATURE))


def _signature_layers(target: Target, repository: str, digest: str) -> tuple[list[tuple[Descriptor, bytes]], int]:
    """Every simple-signing layer attached to `digest`, each payload read and checked against its descriptor,
    and how many were left out because their payload was altered or missing (they can never verify)."""
    out: dict[str, tuple[Descriptor, bytes]] = {}
    unreadable = 0
    for manifest in _signature_manifests(target, repository, digest):
        for layer in manifest.layers:
            if layer.media_type != SIMPLE_SIGNING or not layer.annotations.get(SIGNATURE_ANNOTATION):
                continue
            try:
                data = refs.read_layer(target, repository, layer)
            except BadArtifact:
                unreadable += 1
                continue
            out[layer.annotations[SIGNATURE_ANNOTATION] + layer.digest] = (layer, data)
    return list(out.values()), unreadable


def _signature_manifests(target: Target, repository: str, digest: str) -> list[Manifest]:
    out = []
    for r in refs.find(target, repository, digest):
        if r.artifact_type == refs.ARTIFACT_TYPES[refs.SIGNATURE] or \
                any(v.endswith(f".{refs.SIGNATURE}") for v in r.found_via):
            raw, _, _ = target.resolve(repository, r.digest)
            out.append(Manifest.parse(raw, f"{repository}@{r.digest}"))
    return out


def _verifies(key: PublicKey, layer: Descriptor, data: bytes) -> bool:
    try:
        sig = base64.b64decode(layer.annotations[SIGNATURE_ANNOTATION], validate=True)
    except (binascii.Error, ValueError):
        return False
    return key.verifies(sig, data)


# ---------------------------------------------------------------- verification

@dataclass(frozen=True)
class Verified:
    reference: str
    digest: str
    identity: str
    key: str              # the key's fingerprint
    signed_at: int | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def verify(target: Target, repository: str, digest: str, key: PublicKey, *, docker_reference: str,
           what: str) -> Verified:
    """Check that a signature by `key` is attached to `digest` and names it and `docker_reference`.

    `digest` is what the reference resolves to now (the caller resolved it once, and loads exactly that);
    `what` names the reference in messages. Raises SignatureError saying which check failed.
    """
    layers, unreadable = _signature_layers(target, repository, digest)
    if not layers and unreadable:
        raise SignatureError(what, digest, f"its {unreadable} signature(s) could not be read intact: the signed "
                                           "payload was altered or is missing")
    if not layers:
        raise SignatureError(what, digest, f"no signature is attached to it (looked for tag "
                                           f"{refs.fallback_tag(digest, refs.SIGNATURE)} and the referrers API): "
                                           "it is unsigned, or its tag was moved to unsigned content")
    claims = [data for layer, data in layers if _verifies(key, layer, data)]
    if not claims:
        raise SignatureError(what, digest, f"none of its {len(layers)} signature(s) verifies with the key "
                                           f"{key.fingerprint}: signed by another key, or the payload was altered")
    problems = []
    for data in claims:
        try:
            body = json.loads(data)
            critical = body["critical"]
            signed_digest = critical["image"]["docker-manifest-digest"]
            signed_ref = critical["identity"]["docker-reference"]
            kind = critical["type"]
        except (ValueError, KeyError, TypeError):
            problems.append("a signed payload is not a simple-signing document")
            continue
        if kind != SIGNATURE_TYPE:
            problems.append(f"a signed payload has type {kind!r}, not {SIGNATURE_TYPE!r}")
        elif signed_digest != digest:
            problems.append(f"the signature is for {signed_digest}, but the reference resolves to {digest} now: "
                            "the tag moved after signing")
        elif signed_ref != docker_reference:
            problems.append(f"the signature names {signed_ref!r}, not {docker_reference!r}")
        else:
            optional = body.get("optional") or {}
            ts = optional.get("timestamp") if isinstance(optional, dict) else None
            return Verified(what, digest, signed_ref, key.fingerprint, ts if isinstance(ts, int) else None)
    raise SignatureError(what, digest, "; ".join(problems))


def subject_name(docker_reference: str, reference: str) -> str:
    """REPO:TAG or REPO@DIGEST, as a signature names what it signs."""
    return f"{docker_reference}{'@' if reference.startswith('sha256:') else ':'}{reference}"
