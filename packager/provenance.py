"""Provenance: an in-toto statement with a SLSA provenance v1 predicate, attached to each published pipeline.

It says what went in (the spec file and each model, by digest; the git revision), who built it (the builder id
and the packager version) and when. It is stored like cosign's attestations (packager.referrers: subject + the
tag `sha256-<hex>.att`): the bare statement, or with a signing key a DSSE envelope signed by that key.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from joey import __version__, envvars, mediatypes
from joey import annotations as ann
from joey import referrers as refs
from joey.descriptor import Descriptor
from joey.errors import BadArtifact
from joey.signing import PublicKey, SigningKey, dsse_envelope, dsse_open
from joey.transfer import Target
from packager.artifact import Artifact, without_userinfo
from packager.spec import LoadedSpec

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://joey.dev/packager/publish/v1"
IN_TOTO = "application/vnd.in-toto+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
PREDICATE_ANNOTATION = "predicateType"   # the key cosign's attestation layers carry


def builder_id() -> str:
    """$JOEY_BUILDER_ID (e.g. a CI system's id for itself), else this packager."""
    return without_userinfo(os.environ.get(envvars.BUILDER_ID) or f"https://joey.dev/packager@{__version__}")


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def statement(loaded: LoadedSpec, artifact: Artifact, subject_name: str, *, started: datetime,
              finished: datetime) -> dict:
    """The statement about the pipeline manifest `artifact` built from `loaded`, published as `subject_name`."""
    cfg = artifact.config
    annotations = json.loads(artifact.manifest).get("annotations") or {}
    models = [{"name": step.name, "uri": f"file:{step.source_path}", "digest": {"sha256": step.model.sha256},
               "mediaType": mediatypes.MODEL_WEIGHT_RAW, "annotations": {"model_version": step.model_version}}
              for step in cfg.steps]
    source = []
    if revision := annotations.get(ann.REVISION):
        where = annotations.get(ann.SOURCE)
        source.append({"uri": f"git+{where}@{revision}" if where else f"git+{revision}",
                       "digest": {"gitCommit": revision}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject_name, "digest": {"sha256": artifact.digest.removeprefix("sha256:")}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "spec": {"uri": f"file:{loaded.path.name}",
                             "digest": {"sha256": hashlib.sha256(loaded.path.read_bytes()).hexdigest()}},
                    "pipeline": {"name": cfg.name, "version": cfg.version},
                },
                "internalParameters": {"packager_version": __version__, "created": annotations.get(ann.CREATED)},
                "resolvedDependencies": [*source, *models],
            },
            "runDetails": {
                "builder": {"id": builder_id(), "version": {"joey-packager": __version__}},
                "metadata": {"startedOn": _rfc3339(started), "finishedOn": _rfc3339(finished)},
            },
        },
    }


def attach_provenance(target: Target, repository: str, subject: Descriptor, stmt: dict,
                      key: SigningKey | None = None) -> str:
    """Store the statement as an attestation of `subject` (a DSSE envelope when a key is given); its digest."""
    body = json.dumps(stmt, separators=(",", ":"), sort_keys=True).encode()
    data, media_type = (dsse_envelope(IN_TOTO, body, key), DSSE) if key else (body, IN_TOTO)
    layer = Descriptor.for_bytes(media_type, data, annotations={PREDICATE_ANNOTATION: stmt["predicateType"]})
    return refs.attach(target, repository, subject, [(layer, data)], refs.ATTESTATION)


@dataclass(frozen=True)
class Provenance:
    statement: dict
    signed: bool              # a DSSE envelope, not a bare statement
    verified: bool | None     # with a key: whether the envelope's signature verifies with it

    def to_json(self) -> dict:
        return {"signed": self.signed, "verified": self.verified, "statement": self.statement}


def read_provenance(target: Target, repository: str, digest: str, key: PublicKey | None = None) -> Provenance | None:
    """The provenance attached to `digest` (via its `.att` tag), or None."""
    manifest = refs.attached(target, repository, digest, refs.ATTESTATION)
    if manifest is None:
        return None
    for layer in manifest.layers:
        if layer.annotations.get(PREDICATE_ANNOTATION) != PREDICATE_TYPE:
            continue
        data = refs.read_layer(target, repository, layer)
        signed, verified = layer.media_type == DSSE, None
        if signed:
            _, data, verified = dsse_open(data, key)
        try:
            return Provenance(json.loads(data), signed, verified)
        except ValueError:
            raise BadArtifact(f"{repository}@{manifest.digest}", "the provenance statement is not JSON") from None
    return None
