"""Signing and verifying a whole publish: its pipeline and, when its record lists one, its chart (cosign's
key-based format), and each of its models (an OpenSSF model-signing signature, docs/signing.md)."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from joey import annotations as ann
from joey import mediatypes
from joey import record as rec
from joey import referrers as refs
from joey.descriptor import Descriptor, Manifest
from joey.errors import NotFound
from joey.modelsig import KEY_ANNOTATION
from joey.names import Ref, model_repository_beside, parse, record_tag
from joey.pipeline_config import PipelineConfig, StepConfig
from joey.signing import PublicKey, Signed, SigningKey, Verified, identity, sign, subject_name, verify
from joey.transfer import Target, config_blob, is_pipeline, open_target, pipeline_version
from joey.verify import copy_verified
from packager.modelpack import push_model


@dataclass(frozen=True)
class Located:
    """One manifest to sign or verify: where it is and the identity its signature carries."""

    target: Target
    repository: str
    reference: str
    docker_reference: str

    @property
    def name(self) -> str:
        return subject_name(self.docker_reference, self.reference)


def publish_subjects(target: Target, ref: Ref) -> list[Located]:
    """The manifest `ref` names and, when it is a pipeline with a publish record that lists a chart, that chart."""
    out = [Located(target, ref.repository, ref.reference, identity(ref))]
    raw, _, _ = target.resolve(ref.repository, ref.reference)
    version = pipeline_version(target, ref.repository, Manifest.parse(raw, str(ref)))
    if not version:
        return out
    try:
        helm = rec.read_record(target, ref.repository, record_tag(version)).get("helm") or {}
    except NotFound:
        return out
    if not helm.get("chart") or not helm.get("version"):
        return out
    chart = parse(helm["chart"])
    chart_target = target if chart.host == ref.host and chart.layout == ref.layout else \
        open_target(chart, plain_http=getattr(target, "plain_http", False))
    out.append(Located(chart_target, chart.repository, helm["version"], identity(chart)))
    return out


def sign_publish(target: Target, ref: Ref, key: SigningKey, *,
                 model_files: dict[str, Path] | None = None) -> list[Signed]:
    """cosign signatures of the pipeline (and chart), then a model-signing signature of each model.
    `model_files` (model digest -> local file) spares downloading models the caller has at hand."""
    signed = [sign(s.target, s.repository, s.reference, key, docker_reference=s.docker_reference)
              for s in publish_subjects(target, ref)]
    return signed + sign_models(target, ref, key, model_files or {})


def sign_models(target: Target, ref: Ref, key: SigningKey, model_files: dict[str, Path]) -> list[Signed]:
    """Sign each model file of the pipeline `ref` with `model_signing` and attach the bundle to the model's
    ModelPack manifest (pushed first when a publish older than ModelPack models lacks it). model_signing signs
    with elliptic-curve keys only: an Ed25519 key makes cosign signatures alone."""
    if not isinstance(key.key, ec.EllipticCurvePrivateKey):
        return []
    raw, _, _ = target.resolve(ref.repository, ref.reference)
    manifest = Manifest.parse(raw, str(ref))
    if not is_pipeline(manifest):
        return []
    cfg = PipelineConfig.from_bytes(config_blob(target, ref.repository, manifest))
    with tempfile.TemporaryDirectory(prefix="joey-model-sign-") as tmp:
        pem = Path(tmp) / "key.pem"
        with open(os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:   # 0600, gone after
            f.write(key.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        import model_signing  # here, not at the top: it pulls in Sigstore, which only signing needs

        signer = model_signing.signing.Config().use_elliptic_key_signer(private_key=pem)
        return [_sign_model(target, ref, step, signer, key.public, model_files, Path(tmp)) for step in cfg.steps]


def _sign_model(target: Target, ref: Ref, step: StepConfig, signer, public: PublicKey,
                model_files: dict[str, Path], tmp: Path) -> Signed:
    repo = model_repository_beside(ref.repository, step.name)
    try:
        raw, media_type, digest = target.resolve(repo, step.modelpack_digest)
    except NotFound:
        push_model(target, ref.repository, step)
        raw, media_type, digest = target.resolve(repo, step.modelpack_digest)
    path = model_files.get(step.digest) or _download(target, ref.repository, step, tmp)
    signer.sign(path, tmp / f"{step.name}.sig")
    bundle = (tmp / f"{step.name}.sig").read_bytes()
    layer = Descriptor.for_bytes(mediatypes.SIGSTORE_BUNDLE, bundle, annotations={ann.TITLE: f"{step.name}.sig"})
    signature = refs.attach_artifact(target, repo, Descriptor(media_type, digest, len(raw)),
                                     mediatypes.SIGSTORE_BUNDLE, [(layer, bundle)],
                                     annotations={KEY_ANNOTATION: public.fingerprint},
                                     replaces=refs.same_type_and(KEY_ANNOTATION))
    who = identity(Ref(repository=repo, host=ref.host, layout=ref.layout))
    return Signed(subject_name(who, step.model_version), digest, who, signature, refs.index_tag(digest))


def _download(target: Target, repository: str, step: StepConfig, tmp: Path) -> Path:
    """The model file of `step`, read from the pipeline's repository and checked against its digest."""
    path = tmp / step.file
    with target.read_blob(repository, step.digest) as src, open(path, "wb") as out:
        copy_verified(src, out, Descriptor(mediatypes.MODEL_WEIGHT_RAW, step.digest, step.model.size),
                      f"{repository}@{step.digest}")
    return path


def verify_publish(target: Target, ref: Ref, key: PublicKey) -> list[Verified]:
    out = []
    for s in publish_subjects(target, ref):
        _, _, digest = s.target.resolve(s.repository, s.reference)
        out.append(verify(s.target, s.repository, digest, key, docker_reference=s.docker_reference, what=s.name))
    return out
