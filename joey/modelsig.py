"""OpenSSF model-signing signatures of a pipeline's models, attached to each model's ModelPack manifest.

A signature is the Sigstore bundle `model_signing` writes when signing one model file with an elliptic-curve
key (no transparency log): a DSSE envelope over an in-toto statement whose predicate lists the file's sha256
(resource "."). The packager makes them with the `model_signing` package (packager/signing.py); this module
is the engine's small check of the same bundle, so the engine needs neither that package nor Sigstore:
the envelope verifies with the key and the statement names exactly the model file's sha256.
"""
from __future__ import annotations

import json

from joey import mediatypes
from joey import referrers as refs
from joey.descriptor import Manifest
from joey.errors import BadArtifact
from joey.signing import PublicKey, dsse_open
from joey.transfer import Target

PREDICATE_TYPE = "https://model_signing/signature/v1.0"
IN_TOTO = "application/vnd.in-toto+json"
KEY_ANNOTATION = "dev.joey.signature.key"   # the signing key's fingerprint: one signature per key and model


def bundles(target: Target, repository: str, manifest_digest: str) -> list[bytes]:
    """Every model-signing bundle attached to the ModelPack manifest `manifest_digest`, each read intact."""
    out = []
    for r in refs.find(target, repository, manifest_digest):
        if r.artifact_type != mediatypes.SIGSTORE_BUNDLE:
            continue
        raw, _, _ = target.resolve(repository, r.digest)
        for layer in Manifest.parse(raw, f"{repository}@{r.digest}").layers:
            if layer.media_type == mediatypes.SIGSTORE_BUNDLE:
                out.append(refs.read_layer(target, repository, layer))
    return out


def signs_file(bundle: bytes, key: PublicKey, sha256: str) -> bool:
    """Whether `bundle` is a signature by `key` of the single model file whose sha256 is `sha256`."""
    try:
        envelope = json.loads(bundle)["dsseEnvelope"]
        payload_type, payload, verified = dsse_open(json.dumps(envelope).encode(), key)
        statement = json.loads(payload)
        resources = statement["predicate"]["resources"]
    except (ValueError, KeyError, TypeError, BadArtifact):
        return False
    return bool(verified) and payload_type == IN_TOTO and statement.get("predicateType") == PREDICATE_TYPE and \
        resources == [{"name": ".", "algorithm": "sha256", "digest": sha256}]
