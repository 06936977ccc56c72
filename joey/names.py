"""References: where a pipeline lives.

- registry:      HOST[:PORT]/NAMESPACE/pipelines/NAME:VERSION  (or @sha256:...) — the seeds' PIPELINE_URL
- local store:   NAME[:VERSION] or NAME@sha256:...             — the embedded OCI image layout
- OCI layout:    oci:DIR:REPO[:TAG]                            — skopeo's syntax, for any layout directory
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from joey.errors import ReferenceError_

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST = re.compile(r"^(?:localhost|[A-Za-z0-9.-]+\.[A-Za-z0-9.-]+|[A-Za-z0-9.-]+:[0-9]+|\[[0-9a-fA-F:]+\](?::[0-9]+)?)"
                   r"(?::[0-9]+)?$")


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

    @property
    def ref_name(self) -> str:
        """The org.opencontainers.image.ref.name of this reference in a layout."""
        return f"{self.repository}:{self.tag}" if self.tag else self.repository

    def with_(self, **kw) -> "Ref":
        return Ref(**{**self.__dict__, **kw})

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


def parse(ref: str, *, local_repository_prefix: str = "pipelines/") -> Ref:
    """Parse any of the three forms. A bare NAME is the local store's `pipelines/NAME`."""
    ref = ref.strip()
    if ref.startswith(("oci://", "docker://")):
        ref = ref.split("://", 1)[1]
    elif ref.startswith("oci:"):
        body = ref[4:]
        if ":" not in body:
            return Ref(repository="", layout=Path(body)) if body else _bad(ref)
        path, rest = body.split(":", 1)
        repo, tag, digest = _split(ref, rest)
        return Ref(repository=repo, tag=tag, digest=digest, layout=Path(path))
    first, _, remainder = ref.partition("/")
    if remainder and _HOST.match(first):
        repo, tag, digest = _split(ref, remainder)
        return Ref(repository=repo, tag=tag, digest=digest, host=first)
    repo, tag, digest = _split(ref, ref)
    if "/" not in repo:
        repo = local_repository_prefix + repo
    return Ref(repository=repo, tag=tag, digest=digest)


def _bad(ref: str) -> Ref:
    raise ReferenceError_(ref, "expected oci:DIR:REPO[:TAG]")


def registry_target(registry: str) -> tuple[str, str]:
    """Split a `--registry HOST[:PORT][/NAMESPACE]` into host and namespace ('' when none)."""
    registry = registry.strip().rstrip("/")
    for scheme in ("oci://", "https://", "http://"):
        registry = registry.removeprefix(scheme)
    host, _, ns = registry.partition("/")
    if not host or not _HOST.match(host):
        raise ReferenceError_(registry, "expected --registry HOST[:PORT][/NAMESPACE]")
    for comp in filter(None, ns.split("/")):
        if not _COMPONENT.match(comp):
            raise ReferenceError_(registry, f"{comp!r} is not a valid namespace component")
    return host, ns


def pipeline_repository(namespace: str, name: str) -> str:
    return f"{namespace}/pipelines/{name}" if namespace else f"pipelines/{name}"


def chart_repository(namespace: str, name: str) -> str:
    return f"{namespace}/charts/{name}" if namespace else f"charts/{name}"


# --- DNS-1123 labels

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and bool(DNS1123_LABEL.match(value))
