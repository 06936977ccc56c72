"""Signing and verifying a whole publish: its pipeline and, when its record lists one, its chart."""
from __future__ import annotations

from dataclasses import dataclass

from joey import record as rec
from joey.descriptor import Manifest
from joey.errors import NotFound
from joey.names import Ref, parse, record_tag
from joey.signing import PublicKey, Signed, SigningKey, Verified, identity, sign, subject_name, verify
from joey.transfer import Target, open_target, pipeline_version


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


def sign_publish(target: Target, ref: Ref, key: SigningKey) -> list[Signed]:
    return [sign(s.target, s.repository, s.reference, key, docker_reference=s.docker_reference)
            for s in publish_subjects(target, ref)]


def verify_publish(target: Target, ref: Ref, key: PublicKey) -> list[Verified]:
    out = []
    for s in publish_subjects(target, ref):
        _, _, digest = s.target.resolve(s.repository, s.reference)
        out.append(verify(s.target, s.repository, digest, key, docker_reference=s.docker_reference, what=s.name))
    return out

