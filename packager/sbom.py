"""CycloneDX SBOMs: one for a pipeline (its models, by digest, with opsets and producers) and one for the
engine image (the Python packages of its wheelhouse, with versions and licences), each attached to what it
describes as a referrer (cosign's `sha256-<hex>.sbom` tag and the OCI referrers index or API).

Both are reproducible: the serial number is derived from the subject, the timestamp is the build's.
"""
from __future__ import annotations

import email.parser
import json
import re
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from joey import __version__, mediatypes
from joey import annotations as ann
from joey import referrers as refs
from joey.descriptor import Descriptor
from joey.pipeline_config import PipelineConfig
from joey.transfer import Target

_SERIALS = uuid.UUID("0b7c7a34-6a8e-5b1e-9a3e-2f6c1d9e4a70")   # uuid5 namespace of Joey's SBOM serial numbers
MAX_LICENCE = 120   # a `License:` field longer than this is the licence's full text, not its name


def _bom(subject: Component, created: datetime, serial_of: str, components: list[Component]) -> bytes:
    bom = Bom(serial_number=uuid.uuid5(_SERIALS, serial_of))
    bom.metadata.timestamp = created
    bom.metadata.component = subject
    bom.metadata.tools.components.add(Component(name="joey-packager", version=__version__,
                                                type=ComponentType.APPLICATION))
    for c in components:
        bom.components.add(c)
    bom.register_dependency(subject, components)
    return JsonV1Dot6(bom).output_as_string(indent=None).encode()


def _sha256(hexd: str) -> HashType:
    return HashType(alg=HashAlgorithm.SHA_256, content=hexd)


def pipeline_sbom(cfg: PipelineConfig, manifest_digest: str, created: str) -> bytes:
    """The pipeline's SBOM: the pipeline (its manifest digest) made of one machine-learning-model per step."""
    models = [Component(
        name=s.name, version=s.model_version, type=ComponentType.MACHINE_LEARNING_MODEL, bom_ref=s.digest,
        hashes=[_sha256(s.model.sha256)],
        properties=[Property(name="joey:framework", value=s.framework),
                    Property(name="joey:producer", value=s.model.producer or "unknown"),
                    Property(name="joey:modelpack_digest", value=s.modelpack_digest),
                    *(Property(name=f"joey:opset:{domain or 'ai.onnx'}", value=str(v))
                      for domain, v in sorted(s.model.opset.items()))])
        for s in cfg.steps]
    subject = Component(name=cfg.name, version=cfg.version, type=ComponentType.APPLICATION,
                        bom_ref=manifest_digest, hashes=[_sha256(manifest_digest.removeprefix("sha256:"))])
    return _bom(subject, _when(created), manifest_digest, models)


def engine_sbom(wheel_dirs: list[Path], image: str, created: str) -> bytes:
    """The engine image's SBOM: every wheel the image installs (its wheelhouse and the joey wheel)."""
    wheels = sorted((w for d in wheel_dirs for w in d.glob("*.whl")), key=lambda w: w.name)
    packages = [_package(w) for w in wheels]
    subject = Component(name=image, version=__version__, type=ComponentType.CONTAINER, bom_ref=image)
    return _bom(subject, _when(created), f"{image}\n" + "\n".join(w.name for w in wheels), packages)


def _package(wheel: Path) -> Component:
    """A PyPI library component from a wheel's METADATA: name, version, licence (SPDX expression when given)."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        meta = email.parser.HeaderParser().parsestr(z.read(name).decode("utf-8", "replace"))
    licence = meta.get("License-Expression") or ""
    if not licence and (text := (meta.get("License") or "").strip()) and "\n" not in text and len(text) <= MAX_LICENCE:
        licence = text
    if not licence:
        classifiers = [c.rsplit("::", 1)[-1].strip() for c in meta.get_all("Classifier") or []
                       if c.startswith("License ::")]
        licence = " OR ".join(classifiers) if len(classifiers) > 1 else "".join(classifiers)
    version = meta["Version"]
    purl = PackageURL("pypi", None, re.sub(r"[-_.]+", "-", meta["Name"]).lower(), version)
    return Component(name=meta["Name"], version=version, type=ComponentType.LIBRARY, purl=purl,
                     bom_ref=str(purl), licenses=[LicenseFactory().make_from_string(licence)] if licence else [])


def _when(created: str) -> datetime:
    return datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def attach_sbom(target: Target, repository: str, subject: Descriptor, sbom: bytes) -> str:
    """Attach `sbom` to `subject`; the referrer manifest's digest."""
    layer = Descriptor.for_bytes(mediatypes.CYCLONEDX_JSON, sbom, annotations={ann.TITLE: "sbom.cdx.json"})
    return refs.attach(target, repository, subject, [(layer, sbom)], refs.SBOM)


def read_sbom(target: Target, repository: str, digest: str) -> dict | None:
    """The CycloneDX document attached to `digest`, or None."""
    manifest = refs.attached(target, repository, digest, refs.SBOM)
    for layer in manifest.layers if manifest else ():
        if layer.media_type == mediatypes.CYCLONEDX_JSON:
            return json.loads(refs.read_layer(target, repository, layer))
    return None
