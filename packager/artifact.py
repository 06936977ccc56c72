"""Build the pipeline artifact (config blob + one raw layer per model + manifest) from a loaded spec."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from joey import annotations as ann
from joey import envvars, mediatypes
from joey.descriptor import Descriptor, digest_of, manifest_bytes
from joey.errors import ConfigError
from joey.pipeline_config import PipelineConfig
from packager.spec import LoadedSpec


@dataclass(frozen=True)
class Artifact:
    config: PipelineConfig
    config_bytes: bytes
    layers: tuple[tuple[Descriptor, Path], ...]   # each model layer and the file holding its bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def config_descriptor(self) -> Descriptor:
        return Descriptor.for_bytes(mediatypes.PIPELINE_CONFIG, self.config_bytes)

    @property
    def size(self) -> int:
        return len(self.manifest) + len(self.config_bytes) + sum(d.size for d, _ in self.layers)


def created_timestamp(inputs: list[Path]) -> str:
    """RFC 3339 build time: SOURCE_DATE_EPOCH when set, else the newest input's mtime.

    Never "now": two builds of unchanged files must give a byte-identical manifest.
    """
    raw = os.environ.get(envvars.SOURCE_DATE_EPOCH)
    if raw:
        try:
            epoch = int(raw)
        except ValueError:
            raise ConfigError(envvars.SOURCE_DATE_EPOCH, f"{raw!r} is not a whole number of seconds") from None
    else:
        epoch = int(max(p.stat().st_mtime for p in inputs))
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def without_userinfo(url: str) -> str:
    """`url` without the `user:password@` of its authority: a CI clone's remote
    (https://gitlab-ci-token:SECRET@host/...) must not publish its token in annotations and provenance."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def git_provenance(directory: Path) -> dict[str, str]:
    """source (remote URL, without credentials) and revision (HEAD) of the git work tree holding `directory`,
    when there is one."""
    found: dict[str, str] = {}
    for key, args in (("revision", ["rev-parse", "HEAD"]), ("source", ["config", "--get", "remote.origin.url"])):
        try:
            out = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return found
        if out.returncode == 0 and out.stdout.strip():
            found[key] = without_userinfo(out.stdout.strip())
    return found


def build_artifact(loaded: LoadedSpec, *, source: str | None = None, revision: str | None = None) -> Artifact:
    cfg = loaded.config
    config_bytes = cfg.to_bytes()
    layers = []
    for step, path in zip(cfg.steps, loaded.model_paths):
        layers.append((Descriptor(
            mediatypes.MODEL_WEIGHT_RAW, step.digest, step.model.size,
            annotations={
                ann.TITLE: step.file,
                ann.MODEL_FILEPATH: step.source_path,
                ann.MODEL_NAME: step.name,
                ann.MODEL_VERSION: step.model_version,
                ann.MODEL_FRAMEWORK: step.framework,
            }), path))
    prov = git_provenance(loaded.path.resolve().parent)
    annotations = {
        ann.CREATED: created_timestamp([loaded.path, *loaded.model_paths]),
        ann.VERSION: cfg.version,
        ann.TITLE: cfg.name,
    }
    if source or prov.get("source"):
        annotations[ann.SOURCE] = without_userinfo(source or prov["source"])
    if revision or prov.get("revision"):
        annotations[ann.REVISION] = revision or prov["revision"]
    config_desc = Descriptor.for_bytes(mediatypes.PIPELINE_CONFIG, config_bytes)
    manifest = manifest_bytes(config_desc, [d for d, _ in layers], annotations,
                              artifact_type=mediatypes.PIPELINE_ARTIFACT)
    return Artifact(cfg, config_bytes, tuple(layers), manifest)
