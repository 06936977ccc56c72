"""Air-gapped bundles: one OCI-layout tarball holding a publish — pipeline, record, chart and (when reachable)
the engine image — and its restoration into another registry with every digest unchanged."""
from __future__ import annotations

import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from joey import record as rec
from joey.errors import BadArtifact, JoeyError, UnsafePath
from joey.fsutil import atomic_writer, safe_join
from joey.layout import OCILayout
from packager.publish import destination
from joey.names import parse
from joey.registry import Registry
from joey.transfer import copy, open_target


@dataclass
class Exported:
    path: Path
    refs: dict[str, str] = field(default_factory=dict)   # ref name in the tarball -> manifest digest
    skipped: dict[str, str] = field(default_factory=dict)  # what could not be included, and why


def export_publish(pipeline_ref: str, out: Path, *, store: Path | None = None, plain_http: bool = False) -> Exported:
    """Write `out` (a tar of an OCI image layout) with the publish of `pipeline_ref`."""
    ref = parse(pipeline_ref)
    if not ref.tag:
        raise BadArtifact(pipeline_ref, "name the publish by its version (NAME:VERSION or HOST/NS/pipelines/NAME:VERSION)")
    src = open_target(ref, store=store, plain_http=plain_http)
    record = rec.read_record(src, ref.repository, rec.record_tag(ref.tag))
    name = record["pipeline_name"]
    result = Exported(out)
    with tempfile.TemporaryDirectory(prefix="joey-export-") as tmp:
        layout = OCILayout(Path(tmp) / "layout").init()
        for src_tag, dst in ((ref.tag, f"pipelines/{name}"), (rec.record_tag(ref.tag), f"pipelines/{name}")):
            result.refs[f"{dst}:{src_tag}"] = copy(src, ref.repository, src_tag, layout, dst, src_tag).digest
        helm = record.get("helm") or {}
        if helm.get("chart"):
            chart = parse(helm["chart"])
            csrc = open_target(chart, store=store, plain_http=plain_http)
            result.refs[f"charts/{name}:{helm['version']}"] = copy(csrc, chart.repository, helm["version"], layout,
                                                                  f"charts/{name}", helm["version"]).digest
        engine = record.get("engine_url")
        if engine:
            try:
                eref = parse(engine)
                esrc = Registry(eref.host, plain_http=plain_http) if eref.host else open_target(eref, store=store)
                tag = eref.tag or "latest"
                erepo = "engines/" + eref.repository.rsplit("/", 1)[-1]
                result.refs[f"{erepo}:{tag}"] = copy(esrc, eref.repository, eref.reference, layout, erepo, tag).digest
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


def import_bundle(tar_path: Path, registry: str, *, plain_http: bool = False) -> dict[str, str]:
    """Push everything in an exported tarball to `registry` (HOST/NS); returns reference -> digest."""
    dest = destination(registry, plain_http=plain_http)
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="joey-import-") as tmp:
        root = Path(tmp)
        try:
            with tarfile.open(tar_path) as tar:
                for member in tar.getmembers():
                    if not (member.isfile() or member.isdir()):
                        raise UnsafePath(member.name)
                    safe_join(root, member.name)
                tar.extractall(root, filter="data")
        except tarfile.TarError as e:
            raise BadArtifact(str(tar_path), f"not a readable tar archive ({e})") from None
        layout = OCILayout(root)
        if not layout.exists:
            raise BadArtifact(str(tar_path), "not an OCI image layout tarball (no oci-layout file)")
        # pipelines before their records, so a record's subject is always present
        entries = sorted(layout.entries(), key=lambda e: (":publish-" in e[0], e[0]))
        for name, _ in entries:
            repo, _, tag = name.rpartition(":")
            dest_repo = f"{dest.namespace}/{repo}" if dest.namespace else repo
            out[f"{dest.host}/{dest_repo}:{tag}"] = copy(layout, repo, tag, dest.target, dest_repo, tag).digest
    return out
