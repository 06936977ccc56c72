"""Fetching the pipeline artifact named by PIPELINE_URL into the persistent cache, verified.

The cache is PERSIST/pipelines/<manifest digest hex>/ (manifest.json, config.json, one file per model). A pull
goes to a temp directory beside it and is renamed into place only once every blob matched its size and sha256.
`current` (rewritten atomically by `commit`) names the pipeline the engine last started serving: it moves only
once a pipeline is loaded (and, for an in-line update, has passed its smoke test and been swapped in). When the
registry cannot be reached at start, the engine serves that one instead and says so.

With JOEY_VERIFY_KEY, the digest the tag resolves to must carry a signature by that key (packager.signing.verify)
before anything else is read: an unsigned pipeline, one signed by another key or one whose tag moved after
signing is refused, and the engine keeps serving the last pipeline it verified with that key, or, without one,
stays not ready and retries. `current` records the key a pipeline was verified with, so a cache filled without
verification is never served in place of a verified one.

A pipeline with no cosign signature at all is accepted when each of its models carries an OpenSSF model-signing
signature by the key (joey.modelsig, attached to the model's ModelPack manifest): that covers the model files,
not the pipeline's config (tensor fields, validations), which only a cosign signature covers (docs/signing.md).
"""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3

from engine.settings import Settings
from joey import annotations as ann
from joey import envvars, modelsig
from joey import referrers as refs
from joey.descriptor import Manifest, digest_of
from joey.errors import BadArtifact, JoeyError, PlainHTTPRegistry, RegistryError, RegistryUnreachable
from joey.fsutil import safe_join, write_atomic
from joey.names import model_repository_beside
from joey.pipeline_config import PipelineConfig
from joey.signing import SignatureError, identity, verify
from joey.transfer import config_blob, is_pipeline, open_target, pull_to_dir
from joey.verify import copy_verified

log = logging.getLogger("engine")

@dataclass(frozen=True)
class Fetched:
    config: PipelineConfig
    directory: Path
    digest: str          # the manifest's
    from_cache: bool     # served from the cache because the registry could not be reached
    pipeline_url: str    # what was resolved to `digest`
    verified_key: str | None = None  # fingerprint of the key its signature was verified with


def is_transient(e: BaseException) -> bool:
    """Errors worth retrying: the registry is away, not wrong; or what it serves is not signed (yet) as it must be."""
    if isinstance(e, PlainHTTPRegistry):
        return False   # TLS to a plain-HTTP registry: a setting to fix (JOEY_PLAIN_HTTP), not an outage to wait out
    if isinstance(e, (RegistryUnreachable, SignatureError)):
        return True
    if isinstance(e, RegistryError):
        return e.status >= 500 or e.status == 429
    return isinstance(e, (requests.exceptions.RequestException, urllib3.exceptions.HTTPError))


class PipelineCache:
    def __init__(self, root: Path):
        self.root = root

    def directory(self, digest: str) -> Path:
        return self.root / digest.removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return (self.directory(digest) / "manifest.json").is_file()

    def current(self) -> dict | None:
        """{"digest", "pipeline_url", "fetched_at", "verified_key", "configured_url"} of the pipeline last
        served, if it is still here. verified_key: the fingerprint of the key its signature was verified with,
        else None; configured_url: the PIPELINE_URL the engine ran with (an in-line update moves pipeline_url
        away from it)."""
        try:
            entry = json.loads((self.root / "current").read_text())
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) and self.has(str(entry.get("digest", ""))) else None

    def load(self, digest: str) -> PipelineConfig:
        """The cached pipeline's config, after checking every cached file against the manifest again (the
        volume outlives the process, and anything may have happened to it since the pull)."""
        directory = self.directory(digest)
        where = str(directory)
        try:
            raw = (directory / "manifest.json").read_bytes()
            if digest_of(raw) != digest:
                raise BadArtifact(where, "cached manifest.json does not match its digest")
            manifest = Manifest.parse(raw, where)
            config_bytes = (directory / "config.json").read_bytes()
            copy_verified(io.BytesIO(config_bytes), None, manifest.config, f"{where}/config.json")
            for layer in manifest.layers:
                path = safe_join(directory, layer.annotations.get(ann.TITLE, ""))
                with open(path, "rb") as f:
                    copy_verified(f, None, layer, str(path))
        except OSError as e:
            raise BadArtifact(where, f"cached file unreadable: {e}") from None
        config = _parse_config(config_bytes, where)
        _check_layers(config, manifest, where)
        return config

    def install(self, pulled: Path, digest: str) -> Path:
        """Move a verified pull into place (`current` does not move: see `commit`)."""
        final = self.directory(digest)
        if final.exists():
            shutil.rmtree(pulled)
        else:
            os.replace(pulled, final)
        return final

    def set_current(self, digest: str, pipeline_url: str, verified_key: str | None, configured_url: str) -> None:
        previous = self.current()
        write_atomic(self.root / "current", json.dumps(
            {"digest": digest, "pipeline_url": pipeline_url,
             "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "verified_key": verified_key, "configured_url": configured_url}).encode())
        # Keep this pipeline and the one it replaces; drop older ones and pulls a crash left half-done.
        keep = {self.directory(digest).name, f".tmp-{digest.removeprefix('sha256:')}-{os.getpid()}"}
        if previous:
            keep.add(self.directory(previous["digest"]).name)
        for child in self.root.iterdir():
            if child.is_dir() and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)

    def temp_dir(self, digest: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{digest.removeprefix('sha256:')}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        return tmp


def fetch(settings: Settings) -> Fetched:
    """The pipeline to serve at start: PIPELINE_URL pulled as `pull` does, or, when the registry cannot be
    reached or what it serves is not signed as it must be, the cached `current` pipeline.

    Transient registry errors are raised when there is nothing cached to fall back on.
    """
    cache = PipelineCache(settings.pipelines_dir)
    try:
        return pull(settings)
    except SignatureError as e:
        log.error("Refused: %s", e.one_line())
        return _fallback(cache, settings, e)
    except JoeyError as e:
        if not is_transient(e):
            raise
        return _fallback(cache, settings, e)
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as e:
        return _fallback(cache, settings, e)


def pull(settings: Settings) -> Fetched:
    """Resolve PIPELINE_URL, verify its signature (JOEY_VERIFY_KEY), pull what the cache lacks. Raises on any
    failure; never falls back and never moves `current`."""
    cache = PipelineCache(settings.pipelines_dir)
    ref = settings.ref
    log.info("Fetching manifest and config for pipeline: %s", settings.pipeline_url)
    target = _open(settings)
    raw, _, digest = target.resolve(ref.repository, ref.reference)
    manifest = Manifest.parse(raw, settings.pipeline_url)
    if not is_pipeline(manifest):
        raise BadArtifact(settings.pipeline_url, f"artifactType {manifest.artifact_type!r} and config media "
                                                 f"type {manifest.config.media_type!r} are not a pipeline's")
    verified_key = _verify(target, digest, manifest, settings)
    config = _cached(cache, digest)
    if config is not None:
        _log_models(config)
        log.debug("all layers were already in %s", cache.directory(digest))
    else:
        config = _parse_config(config_blob(target, ref.repository, manifest), settings.pipeline_url)
        tmp = cache.temp_dir(digest)
        try:
            _check_layers(config, manifest, settings.pipeline_url)
            pull_to_dir(target, ref.repository, digest, tmp, manifest=manifest)
            _log_models(config)
            cache.install(tmp, digest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return Fetched(config, cache.directory(digest), digest, from_cache=False, pipeline_url=settings.pipeline_url,
                   verified_key=verified_key)


def resolve(settings: Settings) -> str:
    """The manifest digest PIPELINE_URL names now (one manifest request): how a watched tag is seen to move."""
    target = _open(settings)
    return target.resolve(settings.ref.repository, settings.ref.reference)[2]


def commit(settings: Settings, fetched: Fetched, configured_url: str) -> None:
    """Make `fetched` the cache's `current`: call once the engine serves it, so that a restart (or a registry
    away at the next start) serves it again."""
    try:
        PipelineCache(settings.pipelines_dir).set_current(fetched.digest, fetched.pipeline_url,
                                                          fetched.verified_key, configured_url)
    except OSError as e:
        # A full or failing /persist must not stop serving: the pipeline is loaded; only a restart's choice of
        # cached pipeline falls back to the previous `current`.
        log.warning("could not record %s as the current pipeline under %s (%s); serving it all the same",
                    fetched.digest, settings.pipelines_dir, e.strerror or e)


def _open(settings: Settings):
    return open_target(settings.ref, plain_http=settings.plain_http, username=settings.username,
                       password=settings.password)


def _verify(target, digest: str, manifest: Manifest, settings: Settings) -> str | None:
    """With JOEY_VERIFY_KEY: check the signature of `digest` (raises SignatureError); the key's fingerprint."""
    key = settings.verify_key
    if key is None:
        return None
    repo = settings.ref.repository
    try:
        v = verify(target, repo, digest, key, docker_reference=identity(settings.ref), what=settings.pipeline_url)
    except SignatureError:
        # A cosign signature that fails is never overruled by another form; without one, the models' own
        # signatures may stand in, and when they do not, the cosign check's refusal is the one to report.
        if _has_cosign_signature(target, repo, digest) or not _models_signed(target, manifest, settings):
            raise
        log.info("No cosign signature on %s (%s): its models' model-signing signatures verify with key %s",
                 settings.pipeline_url, digest, key.fingerprint)
        return key.fingerprint
    log.info("Verified the signature of %s (%s) with key %s", settings.pipeline_url, digest, v.key)
    return v.key


def _has_cosign_signature(target, repository: str, digest: str) -> bool:
    return any(r.artifact_type == refs.ARTIFACT_TYPES[refs.SIGNATURE] or
               any(v.endswith(f".{refs.SIGNATURE}") for v in r.found_via)
               for r in refs.find(target, repository, digest))


def _models_signed(target, manifest: Manifest, settings: Settings) -> bool:
    """Whether every model of the pipeline has a model-signing signature by the key over its file's sha256."""
    repo, key = settings.ref.repository, settings.verify_key
    config = _parse_config(config_blob(target, repo, manifest), settings.pipeline_url)
    for step in config.steps:
        bundles = modelsig.bundles(target, model_repository_beside(repo, step.name), step.modelpack_digest)
        if not any(modelsig.signs_file(b, key, step.model.sha256) for b in bundles):
            log.info("model %s has no model-signing signature by the key %s (%d found)", step.name,
                     key.fingerprint, len(bundles))
            return False
    return bool(config.steps)


def _cached(cache: PipelineCache, digest: str) -> PipelineConfig | None:
    """The cached copy of `digest` if it is whole; a damaged copy is removed (to be pulled again)."""
    if not cache.has(digest):
        return None
    try:
        return cache.load(digest)
    except JoeyError as e:
        log.warning("The cached copy of %s is damaged (%s); fetching it again", digest, e.one_line())
        shutil.rmtree(cache.directory(digest), ignore_errors=True)
        return None


def last_good(settings: Settings, configured_url: str) -> Fetched | None:
    """The cache's `current` pipeline if an engine configured with `configured_url` (PIPELINE_URL) served it:
    what to go back to when what that URL names now cannot be served."""
    cache = PipelineCache(settings.pipelines_dir)
    found = _current(cache, settings)
    if found is None or found[0].get("configured_url") != configured_url:
        return None
    entry, config = found
    return Fetched(config, cache.directory(entry["digest"]), entry["digest"], from_cache=True,
                   pipeline_url=entry["pipeline_url"], verified_key=entry.get("verified_key"))


def _current(cache: PipelineCache, settings: Settings) -> tuple[dict, PipelineConfig] | None:
    """The `current` entry and its config, if it is whole and (with JOEY_VERIFY_KEY) was verified with it."""
    entry = cache.current()
    key = settings.verify_key
    if entry and key is not None and entry.get("verified_key") != key.fingerprint:
        log.warning("The cached pipeline %s was not verified with %s %s; not serving it", entry["digest"],
                    envvars.VERIFY_KEY, key.fingerprint)
        return None
    config = _cached(cache, entry["digest"]) if entry else None
    return None if config is None else (entry, config)


def _fallback(cache: PipelineCache, settings: Settings, error: BaseException) -> Fetched:
    found = _current(cache, settings)
    if found is None:
        raise error
    entry, config = found
    key = settings.verify_key
    digest = entry["digest"]
    other = "" if entry.get("pipeline_url") == settings.pipeline_url else \
        f" (NOTE: fetched for {entry.get('pipeline_url')}, not for this PIPELINE_URL)"
    verified = f", its signature verified with key {key.fingerprint}" if key is not None else ""
    if isinstance(error, SignatureError):
        log.warning("Keeping the last good pipeline: serving the cached pipeline %s version %s (%s) fetched at %s%s%s",
                    config.name, config.version, digest, entry.get("fetched_at", "?"), verified, other)
    else:
        reason = error.one_line() if isinstance(error, JoeyError) else f"{type(error).__name__}: {error}"
        log.warning("Registry unreachable (%s): serving the cached pipeline %s version %s (%s) fetched at %s%s%s",
                    reason, config.name, config.version, digest, entry.get("fetched_at", "?"), verified, other)
    return Fetched(config, cache.directory(digest), digest, from_cache=True, pipeline_url=entry.get("pipeline_url")
                   or settings.pipeline_url, verified_key=entry.get("verified_key"))


def _parse_config(data: bytes, where: str) -> PipelineConfig:
    try:
        config = PipelineConfig.from_bytes(data)
    except (ValueError, KeyError, TypeError) as e:
        raise BadArtifact(where, f"the pipeline config does not parse ({type(e).__name__}: {e})") from None
    if not config.steps:
        raise BadArtifact(where, "the pipeline config has no steps")
    return config


def _check_layers(config: PipelineConfig, manifest: Manifest, where: str) -> None:
    """Every step's model file is a layer of the manifest, with the digest the config gives it."""
    by_title = {layer.annotations.get(ann.TITLE): layer.digest for layer in manifest.layers}
    for step in config.steps:
        if step.file not in by_title:
            raise BadArtifact(where, f"no layer holds the model file {step.file!r} of step {step.name!r}")
        if by_title[step.file] != step.digest:
            raise BadArtifact(where, f"the layer {step.file!r} is {by_title[step.file]}, but the config "
                                     f"says step {step.name!r} is {step.digest}")


def _log_models(config: PipelineConfig) -> None:
    """The seeds' start-up lines for the model layers."""
    log.info("Fetching model layers")
    for step in config.steps:
        log.info("digest: %s", step.digest)
        log.info("  filename: %s", step.model.sha256)
        log.info("  name: %s", step.name)
        log.info("  type: model")
        log.info("  runtime: %s", step.framework)
        log.info("  version: %s", step.model_version)
        log.info("")
    log.info("Fetched")
