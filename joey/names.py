"""Every name Joey derives: one function builds each kind, one parses it.

- reference, registry:    HOST[:PORT]/NAMESPACE/pipelines/NAME:VERSION (or @sha256:...) — the seeds' PIPELINE_URL
- reference, local store: NAME[:VERSION] or NAME@sha256:...  — the embedded layout's pipelines/NAME
- reference, OCI layout:  oci:DIR:REPO[:TAG]                 — skopeo's syntax, for any layout directory
  built by `str(Ref)` (`pipeline_ref` for a pipeline), parsed by `parse`
- repository paths:       NS/pipelines/NAME, NS/charts/NAME, NS/engines/joey-engine, NS/models/NAME (a step's
  ModelPack artifact, tagged with its model version) — `*_repository`,
  parsed by `repository_name` (`pipeline_name` refuses what is not a pipeline's)
- publish record tag:     publish-<pipeline version>                    — `record_tag` / `record_version`
- chart:                  oci://HOST/NS/charts/NAME, version 0.0.1-<pipeline version>, reference
  HOST/NS/charts@sha256:... — `chart_url`, `chart_version` / `chart_pipeline_version`, `chart_reference`
- engine image:           HOST/NS/engines/joey-engine:<version>[-<variant>], localhost/joey-engine:... when
  local, the variant naming a non-default platform and accelerator (`-arm64`, `-cuda`, `-arm64-cuda`) —
  `engine_image` (`image_platform` of a spec's arch); any image reference splits into repository, tag and
  digest with `image_parts`
- host:                   localhost, a dotted name, NAME:PORT or [IPv6][:PORT], each with an optional port —
  docker's rule for telling a registry host from a first path component: `is_host`, `registry_target`,
  `registry_host` (of a reference)
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from joey.errors import ConfigError, ReferenceError_

PIPELINES = "pipelines"
CHARTS = "charts"
ENGINES = "engines"
MODELS = "models"
ENGINE_NAME = "joey-engine"
RECORD_TAG_PREFIX = "publish-"
# A chart's SemVer version must start with numbers; the pipeline version (a UUID) rides as the pre-release.
CHART_VERSION_PREFIX = "0.0.1-"
LOCAL_HOST = "localhost"   # the host a locally built engine image is tagged with

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST = re.compile(r"(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|[A-Za-z0-9-]+(?=:)|\[(?P<ip6>[0-9A-Fa-f:.]+)\])"
                   r"(?::(?P<port>[0-9]{1,5}))?")


# ---------------------------------------------------------------- hosts

def is_host(text: str) -> bool:
    """A registry host as the one rule has it: localhost, a dotted name, NAME:PORT or [IPv6]; port 1-65535."""
    m = _HOST.fullmatch(text)
    if m is None or (m["port"] is not None and not 0 < int(m["port"]) <= 65535):
        return False
    if m["ip6"] is not None:
        try:
            ipaddress.IPv6Address(m["ip6"])
        except ValueError:
            return False
    return True


def bare_registry(registry: str) -> str:
    """HOST[:PORT][/NAMESPACE] of a `--registry` or OCI_REGISTRY value as people write it: without surrounding
    space, trailing slashes or an oci://, https:// or http:// scheme. Not checked: registry_target checks."""
    registry = registry.strip().rstrip("/")
    for scheme in ("oci://", "https://", "http://"):
        registry = registry.removeprefix(scheme)
    return registry


def registry_target(registry: str) -> tuple[str, str]:
    """Split a `--registry HOST[:PORT][/NAMESPACE]` into host and namespace ('' when none)."""
    registry = bare_registry(registry)
    host, _, ns = registry.partition("/")
    if not is_host(host):
        raise ReferenceError_(registry, "expected --registry HOST[:PORT][/NAMESPACE]")
    for comp in filter(None, ns.split("/")):
        if not _COMPONENT.match(comp):
            raise ReferenceError_(registry, f"{comp!r} is not a valid namespace component")
    return host, ns


# ---------------------------------------------------------------- references

@dataclass(frozen=True)
class Ref:
    """A parsed reference. `host` is None for the local store and for layouts (then `layout` is set)."""

    repository: str
    tag: str | None = None
    digest: str | None = None
    host: str | None = None
    layout: Path | None = None

    @property
    def is_registry(self) -> bool:
        return self.host is not None

    @property
    def reference(self) -> str:
        """The tag or digest to resolve (digest wins)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        at = f"@{self.digest}" if self.digest else (f":{self.tag}" if self.tag else "")
        if self.host:
            return f"{self.host}/{self.repository}{at}"
        if self.layout is not None:
            return f"oci:{self.layout}:{self.repository}{at}"
        return f"{self.repository}{at}"


def _split(ref: str, rest: str) -> tuple[str, str | None, str | None]:
    digest = tag = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise ReferenceError_(ref, f"{digest!r} is not a sha256 digest")
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ReferenceError_(ref, f"{tag!r} is not a valid tag")
    if not rest:
        raise ReferenceError_(ref, "no repository name")
    for comp in rest.split("/"):
        if not _COMPONENT.match(comp):
            raise ReferenceError_(ref, f"{comp!r} is not a valid repository path component")
    return rest, tag, digest


def parse(ref: str) -> Ref:
    """Parse any of the three forms. A bare NAME is the local store's `pipelines/NAME`."""
    ref = ref.strip()
    if ref.startswith(("oci://", "docker://")):
        ref = ref.split("://", 1)[1]
    elif ref.startswith("oci:"):
        body = ref[4:]
        if ":" not in body:
            if not body:
                raise ReferenceError_(ref, "expected oci:DIR:REPO[:TAG]")
            return Ref(repository="", layout=Path(body))
        path, rest = body.split(":", 1)
        repo, tag, digest = _split(ref, rest)
        return Ref(repository=repo, tag=tag, digest=digest, layout=Path(path))
    first, _, remainder = ref.partition("/")
    if remainder and is_host(first):
        repo, tag, digest = _split(ref, remainder)
        return Ref(repository=repo, tag=tag, digest=digest, host=first)
    repo, tag, digest = _split(ref, ref)
    if "/" not in repo:
        repo = pipeline_repository("", repo)
    return Ref(repository=repo, tag=tag, digest=digest)


def registry_host(reference: str) -> str | None:
    """The registry host a reference names: None for the local store, a layout, or text that is no reference
    (whoever reads that reference reports what is wrong with it)."""
    try:
        return parse(reference).host
    except ReferenceError_:
        return None


def pipeline_ref(name: str, version: str, *, host: str | None = None, namespace: str = "",
                 layout: Path | None = None) -> Ref:
    """Where pipeline NAME:VERSION lives; `str()` of it is the PIPELINE_URL."""
    return Ref(repository=pipeline_repository(namespace, name), tag=version, host=host, layout=layout)


# ---------------------------------------------------------------- repository paths

def _repository(namespace: str, kind: str, name: str) -> str:
    return "/".join(p for p in (namespace.strip("/"), kind, name) if p)


def pipeline_repository(namespace: str, name: str) -> str:
    return _repository(namespace, PIPELINES, name)


def chart_repository(namespace: str, name: str) -> str:
    return _repository(namespace, CHARTS, name)


def engine_repository(namespace: str, name: str = ENGINE_NAME) -> str:
    """NS/engines/NAME: Joey's engine by default; an air-gap bundle keeps another engine image's last name."""
    return _repository(namespace, ENGINES, name)


def model_repository(namespace: str, name: str) -> str:
    """NS/models/NAME: where each publish's model NAME is also a ModelPack artifact (tag: its model version)."""
    return _repository(namespace, MODELS, name)


def model_repository_beside(pipeline_repo: str, name: str) -> str:
    """The models repository of model NAME in the namespace of [NS/]pipelines/PIPELINE."""
    head, _, _ = pipeline_repo.rpartition("/")
    return model_repository(head.removesuffix(PIPELINES).rstrip("/"), name)


def repository_name(repository: str, kind: str = PIPELINES) -> str | None:
    """NAME of [NS/]<kind>/NAME (kind: pipelines, charts, engines or models); None for any other repository."""
    head, _, name = repository.rpartition("/")
    if head != kind and not head.endswith(f"/{kind}"):
        return None
    return name or None


def pipeline_name(repository: str) -> str:
    """NAME of [NS/]pipelines/NAME, refusing any other repository."""
    name = repository_name(repository, PIPELINES)
    if name is None:
        raise ReferenceError_(repository, f"not a pipeline repository ([NAMESPACE/]{PIPELINES}/NAME)")
    return name


# ---------------------------------------------------------------- the publish record's tag

def record_tag(pipeline_version: str) -> str:
    """The tag under which a publish record sits beside its pipeline in pipelines/<name>."""
    return f"{RECORD_TAG_PREFIX}{pipeline_version}"


def record_version(tag: str) -> str | None:
    """The pipeline version a publish-record tag names; None for any other tag."""
    version = tag.removeprefix(RECORD_TAG_PREFIX)
    return version if version != tag and version else None


# ---------------------------------------------------------------- charts

def chart_version(pipeline_version: str) -> str:
    return f"{CHART_VERSION_PREFIX}{pipeline_version}"


def chart_pipeline_version(version: str) -> str:
    """The pipeline version a publish's chart version carries."""
    pipeline_version = version.removeprefix(CHART_VERSION_PREFIX)
    if pipeline_version == version or not pipeline_version:
        raise ReferenceError_(version, f"a publish's chart version is {CHART_VERSION_PREFIX}<pipeline version>")
    return pipeline_version


def chart_url(name: str, *, host: str | None = None, namespace: str = "", layout: Path | None = None) -> str:
    """oci://HOST/NS/charts/NAME (what `helm install` takes), or oci:DIR:charts/NAME in a layout.
    With name "" it is the charts root that `helm push` is given."""
    ref = Ref(repository=chart_repository(namespace, name), host=host, layout=layout)
    return f"oci://{ref}" if host else str(ref)


def chart_reference(digest: str, *, host: str | None = None, namespace: str = "", layout: Path | None = None) -> str:
    """The seeds' helm `reference`: HOST/NS/charts@sha256:..., or oci:DIR:charts@sha256:... in a layout."""
    return str(Ref(repository=chart_repository(namespace, ""), digest=digest, host=host, layout=layout))


# ---------------------------------------------------------------- the engine image

# A spec's `arch` (the seeds' x86/arm) or an image platform's architecture -> the image platform's.
_PLATFORMS = {"x86": "amd64", "amd64": "amd64", "arm": "arm64", "arm64": "arm64"}
DEFAULT_PLATFORM, DEFAULT_ACCEL = "amd64", "none"
# What engine image variants are built for (packager image build --arch/--accel; packager.image.ORT_WHEELS).
IMAGE_PLATFORMS, IMAGE_ACCELS = ("amd64", "arm64"), ("none", "cuda", "openvino")


def image_platform(arch: str) -> str:
    """linux/ARCH's ARCH for a spec's arch (x86 -> amd64, arm -> arm64) or an image platform's own name."""
    try:
        return _PLATFORMS[arch]
    except KeyError:
        raise ConfigError("arch", f"{arch!r}: expected one of {', '.join(_PLATFORMS)}") from None


def engine_variant(arch: str = DEFAULT_PLATFORM, accel: str = DEFAULT_ACCEL) -> str:
    """The variant's part of an engine image tag: "" (amd64, no accelerator), arm64, cuda, arm64-cuda, ...
    (`arch` a spec's or a platform's name)."""
    platform = image_platform(arch)
    return "-".join(([platform] if platform != DEFAULT_PLATFORM else []) + ([accel] if accel != DEFAULT_ACCEL else []))


def engine_image(version: str, *, host: str | None = None, namespace: str = "", arch: str = DEFAULT_PLATFORM,
                 accel: str = DEFAULT_ACCEL) -> str:
    """HOST/NS/engines/joey-engine:VERSION in a registry; localhost/joey-engine:VERSION as built locally; the
    tag of a variant is VERSION-<engine_variant>: VERSION-arm64, VERSION-cuda, VERSION-arm64-cuda."""
    variant = engine_variant(arch, accel)
    tag = f"{version}-{variant}" if variant else version
    if host is None:
        return f"{LOCAL_HOST}/{ENGINE_NAME}:{tag}"
    return str(Ref(repository=engine_repository(namespace), tag=tag, host=host))


def local_engine_image(registry_image: str) -> str:
    """The local build an engine image in a registry is pushed from: localhost/joey-engine with the same tag
    (so the same variant)."""
    return f"{LOCAL_HOST}/{ENGINE_NAME}:{parse(registry_image).tag}"


def image_parts(image: str) -> tuple[str, str | None, str | None]:
    """(repository with its host, tag, digest) of any image reference, as the chart's `image` values take it;
    unlike `parse`, it accepts what a registry would (an image Joey did not name)."""
    digest = tag = None
    if "@" in image:
        image, digest = image.split("@", 1)
    if ":" in image.rsplit("/", 1)[-1]:
        image, tag = image.rsplit(":", 1)
    return image, tag, digest


# ---------------------------------------------------------------- DNS-1123 labels

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and bool(DNS1123_LABEL.match(value))
