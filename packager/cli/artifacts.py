"""Verbs on artifacts in the local store: validate, build, inspect, list."""
from __future__ import annotations

from packager.cli.flags import verb
from packager.cli.output import emit

SOURCE_HELP = "org.opencontainers.image.source (default: git remote)"
REVISION_HELP = "org.opencontainers.image.revision (default: git HEAD)"


def register(sub) -> None:
    s = verb(sub, "validate", cmd_validate, "check a pipeline spec and its models", store=False)
    s.add_argument("spec")
    s = verb(sub, "build", cmd_build, "build the artifact into the local store")
    s.add_argument("spec")
    s.add_argument("--source", help=SOURCE_HELP)
    s.add_argument("--revision", help=REVISION_HELP)
    s = verb(sub, "inspect", cmd_inspect, "show manifest, config, layers, model signatures and referrers "
                                          "(signatures, provenance)", net=True)
    s.add_argument("ref")
    s = verb(sub, "list", cmd_list, "list pipelines in the local store")
    s.add_argument("name", nargs="?")


def cmd_validate(a) -> int:
    from packager.spec import load_spec

    cfg = load_spec(a.spec).config
    out = {"valid": True, "pipeline_name": cfg.name, "pipeline_version": cfg.version,
           "steps": [s.to_json() for s in cfg.steps]}
    return emit(a, out, lambda: f"{a.spec}: valid — pipeline {cfg.name} version {cfg.version}, "
                                f"{len(cfg.steps)} step(s)")


def cmd_build(a) -> int:
    from packager.build import build

    b = build(a.spec, store=a.store, source=a.source, revision=a.revision)
    out = {"reference": str(b.ref), "pipeline_name": b.artifact.config.name,
           "pipeline_version": b.artifact.config.version, "digest": b.digest,
           "store": str(b.ref.layout), "blobs_written": len(b.copy.uploaded), "blobs_present": len(b.copy.skipped)}
    return emit(a, out, lambda: [out["reference"], out["digest"]])


def cmd_inspect(a) -> int:
    from packager.inspect import describe, render

    info = describe(a.ref, store=a.store, plain_http=a.plain_http)
    return emit(a, info, lambda: render(info))


def cmd_list(a) -> int:
    from joey.layout import OCILayout, default_store
    from joey.names import pipeline_repository, record_version, repository_name

    layout = OCILayout(a.store or default_store())
    rows = []
    for name, digest in layout.entries() if layout.exists else []:
        repo, _, tag = name.rpartition(":")
        pipeline = repository_name(repo) or ""
        # records and signatures (sha256-<hex> tags) share the repository; only the store's pipelines are listed
        if repo != pipeline_repository("", pipeline) or record_version(tag) is not None or tag.startswith("sha256-"):
            continue
        if a.name and pipeline != a.name:
            continue
        rows.append({"pipeline_name": pipeline, "pipeline_version": tag, "digest": digest,
                     "reference": f"{pipeline}:{tag}"})
    return emit(a, {"store": str(layout.root), "pipelines": rows},
                lambda: [f"{r['reference']}  {r['digest']}" for r in rows] or [f"no pipelines in {layout.root}"])
