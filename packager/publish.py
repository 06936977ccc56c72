"""Publish: build the artifact, push it, push its chart, and produce the publish record with its commands.

Targets: any OCI registry (`--registry HOST[:PORT]/NAMESPACE`), or the embedded OCI image layout when no registry
is given. The record is stored beside the pipeline as an OCI artifact tagged `publish-<version>` (subject: the
pipeline manifest), so `packager publishes` works from the registry alone when no Ops center is configured.
"""
from __future__ import annotations

import getpass
import io
import json
import os
import socket
import tarfile
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from joey import __version__, envvars, mediatypes
from joey import annotations as ann
from joey import record as rec
from joey import referrers as refs
from joey.descriptor import Descriptor, Manifest, manifest_bytes
from joey.errors import BadRequest, JoeyError, NotFound
from joey.layout import OCILayout, default_store
from joey.names import (
    Ref,
    chart_reference,
    chart_repository,
    chart_url,
    engine_image,
    image_parts,
    parse,
    pipeline_name,
    pipeline_repository,
    record_tag,
    registry_host,
    registry_target,
    repository_name,
)
from joey.pipeline_config import EngineConfig
from joey.quantity import cpus_value
from joey.registry import Registry
from joey.signing import identity, load_signing_key
from joey.transfer import ProgressFactory, Target, copy, no_progress, open_target
from packager import modelpack, provenance, sbom, signing
from packager.artifact import build_artifact
from packager.build import ArtifactSource
from packager.commands import render_commands
from packager.engine_image import NOT_PUBLISHED, ensure_engine_image
from packager.preupload import load_while_uploading
from packager.spec import load_spec


@dataclass(frozen=True)
class Destination:
    """Where a publish goes: a registry HOST/NAMESPACE, or the local layout."""

    target: Target
    host: str | None
    namespace: str
    layout: Path | None
    plain_http: bool = False

    def pipeline_repo(self, name: str) -> str:
        return pipeline_repository(self.namespace, name)

    def url(self, repository: str, tag: str) -> str:
        return str(Ref(repository=repository, tag=tag, host=self.host, layout=self.layout))


def destination(registry: str | None, *, store: Path | None = None, plain_http: bool = False,
                username: str | None = None, password: str | None = None) -> Destination:
    if registry:
        host, ns = registry_target(registry)
        return Destination(Registry(host, plain_http=plain_http, username=username, password=password), host, ns,
                           None, plain_http)
    layout = OCILayout(store or default_store()).init()
    return Destination(layout, None, "", layout.root)


def default_engine_image(dest: Destination, spec_image: str | None, engine: EngineConfig) -> str:
    """spec engine.image, else $JOEY_ENGINE_IMAGE, else REGISTRY/NS/engines/joey-engine:<packager version>, tagged
    with the variant of the deployment's arch and accel (joey-engine:<version>-cuda, ...)."""
    if spec_image:
        return spec_image
    if env := os.environ.get(envvars.ENGINE_IMAGE):
        return env
    return engine_image(__version__, host=dest.host, namespace=dest.namespace, arch=engine.arch, accel=engine.accel)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def publish(spec_path: str | Path, *, registry: str | None = None, store: Path | None = None,
            plain_http: bool = False, username: str | None = None, password: str | None = None,
            replaces: list[str] | None = None, created_by: str | None = None, with_chart: bool = True,
            source: str | None = None, revision: str | None = None, ops=None,
            sign_key: str | Path | None = None, progress: ProgressFactory = no_progress,
            engine_image_source: str | None = None, with_engine_image: bool = True) -> dict:
    """Build, push pipeline + chart, store and return the publish record.

    A registry publish first makes sure its engine image is in the registry (packager/engine_image.py: copied
    from `engine_image_source` when missing) and pins it by digest; `with_engine_image=False` leaves it out.

    With `ops` (an ops.client.OpsClient) the publish is also recorded in the Ops center, which assigns its `id`
    and moves the edges of replaced publishes to it; the record stored beside the pipeline then carries that id.
    Each publish attaches its provenance to the pipeline; with `sign_key` (a PEM private key file) the pipeline
    and the chart are signed and the provenance is a signed envelope (docs/signing.md).
    """
    started = datetime.now(UTC)
    key = load_signing_key(sign_key) if sign_key else None   # a bad key fails before anything is pushed
    if registry:
        dest = destination(registry, plain_http=plain_http, username=username, password=password)
        loaded = load_while_uploading(spec_path, dest.target, dest.pipeline_repo, progress)
    else:  # nothing may be created, not even the store, for a spec that fails
        loaded = load_spec(spec_path)
        dest = destination(None, store=store)
    artifact = build_artifact(loaded, source=source, revision=revision)
    cfg = artifact.config
    repo = dest.pipeline_repo(cfg.name)
    src = ArtifactSource(artifact)
    engine_url = default_engine_image(dest, loaded.engine_image, cfg.engine)
    if dest.host and with_engine_image:   # before the pipeline is pushed: a publish without its engine stops here
        engine_url = ensure_engine_image(dest, engine_url, source=engine_image_source, username=username,
                                         password=password, progress=progress)
    copy(src, src.repository, cfg.version, dest.target, repo, cfg.version, progress=progress)
    modelpack.push_models(dest.target, repo, cfg)   # the models as ModelPack artifacts too
    model_files = {s.digest: p for s, p in zip(cfg.steps, loaded.model_paths)}
    pipeline_url = dest.url(repo, cfg.version)
    pipeline_ref = Ref(repository=repo, tag=cfg.version, host=dest.host, layout=dest.layout)
    replaced = [_replaced(r, dest, ops) for r in (replaces or [])]
    previous = None if replaced else _existing_record(dest, repo, cfg.version)
    same = previous is not None and previous.get("status") != ERROR and \
        previous.get("pipeline_digest") == artifact.digest and previous.get("engine_url") == engine_url and \
        bool(previous.get("helm")) == with_chart
    if same and (ops is None or previous.get("id") is not None):
        if key:   # the same publish, signed now (or again)
            signing.sign_publish(dest.target, pipeline_ref, key, model_files=model_files)
        return previous  # republishing unchanged content is the same publish: nothing to upload

    now = _now()
    record = rec.ordered({
        "id": None,
        "pipeline_name": cfg.name,
        "pipeline_version": cfg.version,
        "status": "Published",
        "workspace_name": cfg.workspace,
        "engine_url": engine_url,
        "pipeline_url": pipeline_url,
        "pipeline_digest": artifact.digest,
        "helm": previous["helm"] if same else None,   # unchanged content missing only in Ops: its chart is there
        "engine_config": cfg.engine.to_json(),
        "docker_run_variables": {envvars.PIPELINE_URL: pipeline_url}
                                | ({envvars.PLAIN_HTTP: "true"} if dest.plain_http else {}),
        "user_images": [],
        "created_by": created_by or _who(),
        "created_at": now,
        "updated_at": now,
        "replaces": [_replaced_entry(r) for r in replaced],
        "error": None,
    } | ({} if with_engine_image else {"engine_image": NOT_PUBLISHED}))
    subject = Manifest.parse(artifact.manifest, pipeline_url).descriptor
    try:
        if with_chart and not same:
            record["helm"] = _publish_chart(dest, cfg.name, cfg.version, pipeline_url, engine_url, cfg.engine,
                                            username=username, password=password)
        record["commands"] = commands_for(record, upgrade=bool(replaced))
        if ops is not None:
            bundles = _register(ops, record, cfg)
            if replaced:
                record["commands"]["edges"] = edge_commands(record, bundles)
    except Exception as e:
        _record_failure(dest, repo, record, subject, e)
        raise
    store_record(dest, repo, record, subject)
    stmt = provenance.statement(loaded, artifact, identity(pipeline_ref), started=started,
                                finished=datetime.now(UTC))
    provenance.attach_provenance(dest.target, repo, subject, stmt, key)
    created = json.loads(artifact.manifest)["annotations"][ann.CREATED]
    sbom.attach_sbom(dest.target, repo, subject, sbom.pipeline_sbom(cfg, artifact.digest, created))
    if key:
        signing.sign_publish(dest.target, pipeline_ref, key, model_files=model_files)
    return record


ERROR = "Error"   # the status of a publish that failed after its pipeline was pushed (the seeds' status values)


def _register(ops, record: dict, cfg) -> dict[str, str]:
    """Record the publish in the Ops center, which assigns its id and status; the EDGE_BUNDLE of each enrolled
    edge attached to it (the edges that `replaces` moved here), by edge name."""
    # Ops registers the version's models as model configs (seed 003's model_config_ids).
    models = [{"name": s.name, "model_version": s.model_version, "sha256": s.model.sha256} for s in cfg.steps]
    answer = ops.publish({**record, "replaces": [r["id"] or r["pipeline_url"] for r in record["replaces"]],
                          "models": models})
    record.update(id=answer["id"], status=answer["status"], created_at=answer["created_at"],
                  updated_at=answer["updated_at"])
    return answer.get("edge_bundles") or {}


def _record_failure(dest: Destination, repo: str, record: dict, subject: Descriptor, e: Exception) -> None:
    """Leave beside the pushed pipeline a record saying the publish failed and why (`status: Error`, `error`),
    so `packager publishes` shows it and the next publish of the same content completes it. Storing it is
    best effort: the registry that failed the publish may refuse this too, and the first error is the one to
    report."""
    failed = {k: v for k, v in record.items() if k != "commands"}
    failed.update(status=ERROR, error=e.one_line() if isinstance(e, JoeyError) else f"{type(e).__name__}: {e}",
                  updated_at=_now())
    with suppress(JoeyError, OSError):
        store_record(dest, repo, failed, subject)


def commands_for(record: dict, *, edge_bundle: str | None = None, upgrade: bool = False) -> dict:
    helm = record.get("helm") or {}
    return render_commands(pipeline_url=record["pipeline_url"], engine_url=record["engine_url"],
                           engine=EngineConfig.from_json(record["engine_config"]),
                           oci_registry=registry_host(record["pipeline_url"]) or "",
                           chart=helm.get("chart"), chart_version=helm.get("version"), edge_bundle=edge_bundle,
                           upgrade=upgrade, plain_http=is_plain_http(record))


def edge_commands(record: dict, bundles: dict[str, str]) -> dict[str, dict]:
    """Per edge that a replacing publish moves (seed 004): its docker run, podman run and helm upgrade with the
    bundle Ops made for it, whose JOIN_TOKEN is joey.bundle.REPLACE_PLACEHOLDER (the edge keeps its
    credential), and the bundle itself."""
    kept = ("docker_run", "podman_run", "helm_install")
    out = {}
    for edge, bundle in sorted(bundles.items()):
        commands = commands_for(record, edge_bundle=bundle, upgrade=True)
        out[edge] = {"edge_bundle": bundle} | {k: commands[k] for k in kept if k in commands} | \
            {"notes": {k: v for k, v in commands["notes"].items() if k in kept}}
    return out


def is_plain_http(record: dict) -> bool:
    """Whether the record's registry is plain HTTP: its docker_run_variables say so, or (in an Ops center's copy,
    which keeps only its own variables) its chart's values."""
    values = (record.get("helm") or {}).get("values") or {}
    return (record.get("docker_run_variables") or {}).get(envvars.PLAIN_HTTP) == "true" or \
        bool((values.get("ociRegistry") or {}).get("plainHttp"))


def _who() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return "unknown"


def _replaced(ref_or_id: str, dest: Destination, ops) -> dict:
    """A --replaces argument: an Ops publish id (with Ops), else a pipeline reference."""
    if ops is not None and str(ref_or_id).isdigit():
        return ops.get_publish_status(int(ref_or_id))
    return find_publish(ref_or_id, dest)


def _replaced_entry(record: dict) -> dict:
    return {k: record.get(k) for k in ("id", "pipeline_name", "pipeline_version", "pipeline_url", "pipeline_digest")} \
        | {"helm_version": (record.get("helm") or {}).get("version")}


# ---------------------------------------------------------------- records

def store_record(dest: Destination, repo: str, record: dict, subject: Descriptor) -> None:
    manifest, blob, layer = rec.record_artifact(record, subject)
    empty = Descriptor.for_bytes(mediatypes.OCI_EMPTY, b"{}")
    for desc, data in ((empty, b"{}"), (layer, blob)):
        dest.target.write_blob(repo, desc, io.BytesIO(data))
    dest.target.write_manifest(repo, record_tag(record["pipeline_version"]), manifest, mediatypes.OCI_MANIFEST)
    refs.register(dest.target, repo, manifest)   # a referrer of the pipeline, listed for OCI tools


def _existing_record(dest: Destination, repo: str, version: str) -> dict | None:
    try:
        return rec.read_record(dest.target, repo, record_tag(version))
    except NotFound:
        return None


def find_publish(ref_or_id: str, dest: Destination) -> dict:
    """The publish record a --replaces names: a pipeline reference (NAME:VERSION or a full URL)."""
    ref = parse(ref_or_id)
    if ref.host:
        target: Target = Registry(ref.host, plain_http=dest.plain_http)
        repo = ref.repository
    elif ref.layout:
        target, repo = open_target(ref), ref.repository
    else:
        target, repo = dest.target, dest.pipeline_repo(pipeline_name(ref.repository))
    if not ref.tag:
        records = rec.list_records(target, repo)
        if not records:
            raise NotFound(f"a publish of {ref_or_id}")
        return records[-1]
    return rec.read_record(target, repo, record_tag(ref.tag))


# ---------------------------------------------------------------- charts

def chart_values(pipeline_url: str, engine_url: str, engine, oci_registry: str, plain_http: bool = False) -> dict:
    """The per-publish chart's defaults: this publish's pipeline, engine image, registry and resources."""
    repository, tag, digest = image_parts(engine_url)
    image = {"repository": repository} | ({"tag": tag} if tag else {}) | ({"digest": digest} if digest else {})
    return {
        "pipelineUrl": pipeline_url,
        "image": image,
        "ociRegistry": {"registry": oci_registry} | ({"plainHttp": True} if plain_http else {}),
        "engine": {"cpus": cpus_value(engine.cpus), "memory": engine.memory, "gpus": engine.gpus, "arch": engine.arch,
                   "accel": engine.accel},
    }


def _publish_chart(dest: Destination, name: str, version: str, pipeline_url: str, engine_url: str, engine,
                   *, username: str | None, password: str | None) -> dict:
    from packager import chart

    values = chart_values(pipeline_url, engine_url, engine, dest.host or "", dest.plain_http)
    with tempfile.TemporaryDirectory(prefix="joey-chart-") as tmp:
        tgz = chart.build_publish_chart(name, version, values, Path(tmp))
        if dest.host:
            ref = chart.push_chart(tgz, dest.host, dest.namespace, plain_http=dest.plain_http,
                                   username=username, password=password)
            # The seeds' helm.reference names the chart as NS/charts@DIGEST: the manifest goes there too (by
            # digest, untagged), so that the reference resolves for any registry client.
            copy(dest.target, chart_repository(dest.namespace, name), ref.digest, dest.target,
                 chart_repository(dest.namespace, ""), None)
            return {"chart": ref.chart, "reference": ref.reference, "version": ref.version, "values": values}
        return _store_chart_in_layout(dest, tgz, name, values)


def _store_chart_in_layout(dest: Destination, tgz: Path, name: str, values: dict) -> dict:
    """A Helm OCI artifact (Helm's media types) in the local layout, as `helm push` would lay it out."""
    data = tgz.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/Chart.yaml") and m.name.count("/") == 1)
        meta = yaml.safe_load(tar.extractfile(member).read())
    config = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    cdesc = Descriptor.for_bytes(mediatypes.HELM_CONFIG, config)
    ldesc = Descriptor.for_bytes(mediatypes.HELM_CHART_CONTENT, data)
    repo = chart_repository("", name)
    for desc, blob in ((cdesc, config), (ldesc, data)):
        dest.target.write_blob(repo, desc, io.BytesIO(blob))
    manifest = manifest_bytes(cdesc, [ldesc], {ann.TITLE: name, ann.VERSION: meta["version"]})
    digest = dest.target.write_manifest(repo, meta["version"], manifest, mediatypes.OCI_MANIFEST)
    return {"chart": chart_url(name, layout=dest.layout), "reference": chart_reference(digest, layout=dest.layout),
            "version": meta["version"], "values": values}


def publishes(pipeline: str | None, *, registry: str | None = None, store: Path | None = None,
              plain_http: bool = False) -> list[dict]:
    """Publish records from the registry (or the local store): tags + records are the truth without Ops."""
    dest = destination(registry, store=store, plain_http=plain_http)
    if pipeline:
        return rec.list_records(dest.target, dest.pipeline_repo(pipeline))
    if dest.layout is None:
        raise BadRequest("listing every pipeline needs the registry catalog; name a pipeline",
                         hint="packager publishes PIPELINE --registry HOST/NS")
    names = sorted({repository_name(n.split(":", 1)[0]) for n in OCILayout(dest.layout).ref_names()} - {None})
    return [r for n in names for r in rec.list_records(dest.target, dest.pipeline_repo(n))]

