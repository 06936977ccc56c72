"""Air-gapped bundles: one OCI-layout tarball holding a publish — pipeline, record, chart, its models as
ModelPack artifacts and (when reachable) the engine image, each with its referrers (signatures, provenance,
SBOMs) — and its restoration into another registry with every digest unchanged and every referrer listed."""
from __future__ import annotations

import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from joey import envvars, mediatypes
from joey import record as rec
from joey import referrers as refs
from joey.descriptor import Descriptor, Manifest
from joey.errors import ArchiveTooLarge, BadArtifact, ConfigError, JoeyError, NotFound, UnsafePath
from joey.fsutil import atomic_writer, safe_join
from joey.layout import OCILayout
from joey.names import (
    chart_repository,
    engine_repository,
    model_repository_beside,
    parse,
    pipeline_repository,
    record_tag,
    record_version,
)
from joey.pipeline_config import PipelineConfig
from joey.quantity import memory_bytes
from joey.registry import Registry
from joey.transfer import ProgressFactory, Target, copy, no_progress, open_target, read_config
from packager.publish import destination

# A compressed export (gzip, xz) of weights and layers shrinks little; far more expansion is a decompression bomb.
IMPORT_MAX_RATIO = 4
IMPORT_MIN_BYTES = 64 * 2**20
# An export holds a few dozen files (blobs, index, oci-layout); the list of members is kept in memory while checked.
IMPORT_MAX_MEMBERS = 10_000


@dataclass
class Exported:
    path: Path
    refs: dict[str, str] = field(default_factory=dict)   # ref name in the tarball -> manifest digest
    skipped: dict[str, str] = field(default_factory=dict)  # what could not be included, and why


def export_publish(pipeline_ref: str, out: Path, *, store: Path | None = None, plain_http: bool = False,
                   progress: ProgressFactory = no_progress) -> Exported:
    """Write `out` (a tar of an OCI image layout) with the publish of `pipeline_ref`."""
    ref = parse(pipeline_ref)
    if not ref.tag:
        raise BadArtifact(pipeline_ref, "name the publish by its version (NAME:VERSION or HOST/NS/pipelines/NAME:VERSION)")
    src = open_target(ref, store=store, plain_http=plain_http)
    record = rec.read_record(src, ref.repository, record_tag(ref.tag))
    name = record["pipeline_name"]
    repo = pipeline_repository("", name)
    result = Exported(out)
    with tempfile.TemporaryDirectory(prefix="joey-export-") as tmp:
        layout = OCILayout(Path(tmp) / "layout").init()
        # A local store's record names the store (oci:STORE:...), which means nothing where the bundle goes.
        local = isinstance(src, OCILayout)
        for src_tag in (ref.tag,) if local else (ref.tag, record_tag(ref.tag)):
            result.refs[f"{repo}:{src_tag}"] = copy(src, ref.repository, src_tag, layout, repo, src_tag,
                                                    progress=progress).digest
        if local:
            result.refs[f"{repo}:{record_tag(ref.tag)}"] = _portable_record(layout, repo, ref.tag, record, src.root)
        refs.register(layout, repo, layout.resolve(repo, record_tag(ref.tag))[0])
        _with_referrers(src, ref.repository, layout, repo, result.refs[f"{repo}:{ref.tag}"])
        _export_models(src, ref.repository, layout, repo, ref.tag, result, progress)
        helm = record.get("helm") or {}
        if helm.get("chart"):
            chart = parse(helm["chart"])
            csrc = open_target(chart, store=store, plain_http=plain_http)
            crepo = chart_repository("", name)
            result.refs[f"{crepo}:{helm['version']}"] = copy(csrc, chart.repository, helm["version"], layout,
                                                             crepo, helm["version"], progress=progress).digest
            _with_referrers(csrc, chart.repository, layout, crepo, result.refs[f"{crepo}:{helm['version']}"])
        engine = record.get("engine_url")
        if engine:
            try:
                eref = parse(engine)
                esrc = Registry(eref.host, plain_http=plain_http) if eref.host else open_target(eref, store=store)
                tag = eref.tag or "latest"
                erepo = engine_repository("", eref.repository.rsplit("/", 1)[-1])
                result.refs[f"{erepo}:{tag}"] = copy(esrc, eref.repository, eref.reference, layout, erepo, tag,
                                                      progress=progress).digest
                _with_referrers(esrc, eref.repository, layout, erepo, result.refs[f"{erepo}:{tag}"])
            except JoeyError as e:
                result.skipped[engine] = e.one_line()
        with atomic_writer(out) as f, tarfile.open(fileobj=f, mode="w") as tar:
            for path in sorted(layout.root.rglob("*")):
                if path.name == ".lock":
                    continue
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(layout.root)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if path.is_file():
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
    return result


def _with_referrers(src: Target, src_repo: str, dst: Target, dst_repo: str, digest: str) -> None:
    """Carry along what is attached to `digest`, but records: each travels under its own tag (and a local
    store's is rewritten on the way)."""
    refs.copy_referrers(src, src_repo, dst, dst_repo, digest, leave=(rec.PUBLISH_RECORD,))


def _export_models(src: Target, src_repo: str, layout: OCILayout, repo: str, version: str, result: Exported,
                   progress: ProgressFactory) -> None:
    """The publish's models as ModelPack artifacts, with their signatures; a publish older than them has none."""
    _, config = read_config(layout, repo, version)
    for step in PipelineConfig.from_bytes(config).steps:
        src_models, models = model_repository_beside(src_repo, step.name), model_repository_beside(repo, step.name)
        try:
            digest = copy(src, src_models, step.model_version, layout, models, step.model_version,
                          progress=progress).digest
        except NotFound:
            continue
        result.refs[f"{models}:{step.model_version}"] = digest
        _with_referrers(src, src_models, layout, models, digest)


def _portable_record(layout: OCILayout, repo: str, version: str, record: dict, store: Path) -> str:
    """Store in the bundle a local-store publish's record that names no store: its `oci:STORE:` URLs lose that
    prefix (pipelines/NAME:VERSION, charts/NAME, as in the bundle), and its commands, which only worked from
    that store, go. Returns the record manifest's digest."""
    prefix = f"oci:{store}:"

    def portable(value):
        if isinstance(value, str):
            return value.removeprefix(prefix)
        if isinstance(value, dict):
            return {k: portable(v) for k, v in value.items()}
        if isinstance(value, list):
            return [portable(v) for v in value]
        return value

    moved = portable({k: v for k, v in record.items() if k != "commands"})
    raw, media_type, _ = layout.resolve(repo, version)
    manifest, blob, desc = rec.record_artifact(moved, Manifest.parse(raw, f"{repo}:{version}").descriptor)
    layout.write_bytes_blob(desc, blob)
    layout.write_bytes_blob(Descriptor.for_bytes(mediatypes.OCI_EMPTY, b"{}"), b"{}")
    return layout.write_manifest(repo, record_tag(version), manifest, mediatypes.OCI_MANIFEST)


def import_limit(tar_path: Path) -> int:
    """The most bytes an archive may expand to: $JOEY_IMPORT_MAX_BYTES, else IMPORT_MAX_RATIO times its own size
    (at least IMPORT_MIN_BYTES). An exported tar expands to less than its size; a compressed one by a few times."""
    setting = os.environ.get(envvars.IMPORT_MAX_BYTES)
    if setting:
        try:
            return memory_bytes(setting)
        except ValueError as e:
            raise ConfigError(envvars.IMPORT_MAX_BYTES, str(e)) from None
    return max(IMPORT_MAX_RATIO * tar_path.stat().st_size, IMPORT_MIN_BYTES)


def _checked_members(tar: tarfile.TarFile, root: Path, tar_path: Path) -> list[tarfile.TarInfo]:
    """Every member, checked before anything is extracted: plain files and directories inside `root`, at most
    IMPORT_MAX_MEMBERS of them, and in all no more than import_limit() bytes. Headers are read one at a time, so a
    bomb is refused after decompressing at most the limit, not all of it."""
    limit, expanded, members = import_limit(tar_path), 0, []
    for member in tar:
        if len(members) == IMPORT_MAX_MEMBERS:
            raise BadArtifact(str(tar_path), f"more than {IMPORT_MAX_MEMBERS} files: not an exported publish")
        if not (member.isfile() or member.isdir()):
            raise UnsafePath(member.name)
        safe_join(root, member.name)
        # What the member costs on disk: its data in whole blocks and its header, as in a plain tar.
        expanded += tarfile.BLOCKSIZE + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        if expanded > limit:
            raise ArchiveTooLarge(str(tar_path), limit, envvars.IMPORT_MAX_BYTES)
        members.append(member)
    return members


def import_bundle(tar_path: Path, registry: str, *, plain_http: bool = False,
                  progress: ProgressFactory = no_progress) -> dict[str, str]:
    """Push everything in an exported tarball to `registry` (HOST/NS); returns reference -> digest."""
    dest = destination(registry, plain_http=plain_http)
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="joey-import-") as tmp:
        root = Path(tmp)
        try:
            with tarfile.open(tar_path) as tar:
                tar.extractall(root, members=_checked_members(tar, root, tar_path), filter="data")
        except tarfile.TarError as e:
            # tarfile's message lists every compression it tried, one line each: the first says it all
            first = str(e).splitlines()[0].rstrip(":")
            raise BadArtifact(str(tar_path), f"not a readable tar archive ({first})") from None
        layout = OCILayout(root)
        if not layout.exists:
            raise BadArtifact(str(tar_path), "not an OCI image layout tarball (no oci-layout file)")
        if not layout.entries():
            raise BadArtifact(str(tar_path), "its index.json names no image: there is nothing to import")
        # pipelines before their records, so a record's subject is always present
        entries = sorted(layout.entries(), key=lambda e: (record_version(e[0].rpartition(":")[2]) is not None,
                                                          e[0]))
        for name, _ in entries:
            repo, _, tag = name.rpartition(":")
            if tag.startswith("sha256-"):
                continue   # referrers tags and cosign's: carried with what they are about, below
            dest_repo = f"{dest.namespace}/{repo}" if dest.namespace else repo
            digest = copy(layout, repo, tag, dest.target, dest_repo, tag, progress=progress).digest
            out[dest.url(dest_repo, tag)] = digest
            if record_version(tag):
                refs.register(dest.target, dest_repo, layout.resolve(repo, tag)[0])
            else:
                _with_referrers(layout, repo, dest.target, dest_repo, digest)
    return out
