"""Verbs that move pipelines to and from registries: publish, publishes, push, pull."""
from __future__ import annotations

from pathlib import Path

from packager.cli.artifacts import REVISION_HELP, SOURCE_HELP
from packager.cli.flags import verb
from packager.cli.ops import ops_client
from packager.cli.output import emit, progress

REGISTRY_HELP = "HOST[:PORT]/NAMESPACE"
REGISTRY_OR_STORE_HELP = "HOST[:PORT]/NAMESPACE (default: the local store)"


def register(sub) -> None:
    s = verb(sub, "push", cmd_push, "push a built pipeline to a registry", net=True)
    s.add_argument("ref", help="NAME[:VERSION] in the local store, or oci:DIR:REPO:TAG")
    s.add_argument("--registry", required=True, help=REGISTRY_HELP)
    s = verb(sub, "publish", cmd_publish, "build, push pipeline and chart, print the publish record", net=True)
    s.add_argument("spec")
    s.add_argument("--registry", help=REGISTRY_OR_STORE_HELP)
    s.add_argument("--replaces", action="append", default=[], metavar="REF_OR_ID",
                   help="the publish this one replaces (its commands become `helm upgrade`)")
    s.add_argument("--created-by", help="who published (default user@host)")
    s.add_argument("--no-chart", action="store_true", help="skip the Helm chart")
    s.add_argument("--source", help=SOURCE_HELP)
    s.add_argument("--revision", help=REVISION_HELP)
    s.add_argument("--ops", help="record the publish in this Ops center (default $JOEY_OPS_URL; token from "
                                 "$JOEY_OPS_TOKEN)")
    s.add_argument("--sign-key", metavar="KEY", help="sign the pipeline, the chart and the provenance with this "
                                                     "PEM private key (docs/signing.md)")
    engine = s.add_mutually_exclusive_group()
    engine.add_argument("--engine-image", metavar="REF",
                        help="copy the engine image from here when the registry lacks it: HOST/REPO:TAG, "
                             "oci:DIR:REPO:TAG or containers-storage:IMAGE (default $JOEY_ENGINE_IMAGE_SOURCE, "
                             "else the image `packager image build` left in podman)")
    engine.add_argument("--no-engine-image", action="store_true",
                        help="publish without making sure the engine image is in the registry")
    s = verb(sub, "publishes", cmd_publishes, "list publishes of a pipeline (from the registry or the store)",
             net=True)
    s.add_argument("pipeline", nargs="?")
    s.add_argument("--registry", help=REGISTRY_OR_STORE_HELP)
    s = verb(sub, "pull", cmd_pull, "pull a pipeline's models and config into a directory, verified", net=True)
    s.add_argument("ref")
    s.add_argument("--out", required=True, type=Path)


def cmd_push(a) -> int:
    from joey.descriptor import Manifest
    from joey.names import parse, pipeline_name
    from joey.transfer import copy, open_target, pipeline_version
    from packager.publish import destination

    ref = parse(a.ref)
    src = open_target(ref, store=a.store, plain_http=a.plain_http)
    dest = destination(a.registry, plain_http=a.plain_http)
    repo = dest.pipeline_repo(pipeline_name(ref.repository))
    tag = ref.tag
    if tag is None:   # pushed by digest: tagged with the version its config names
        raw, _, _ = src.resolve(ref.repository, ref.reference)
        tag = pipeline_version(src, ref.repository, Manifest.parse(raw, str(ref))) or "latest"
    result = copy(src, ref.repository, ref.reference, dest.target, repo, tag, progress=progress(a))
    out = {"reference": dest.url(repo, tag), "digest": result.digest, "uploaded": len(result.uploaded),
           "skipped": len(result.skipped), "bytes_uploaded": result.bytes_uploaded}
    return emit(a, out, lambda: f"{out['reference']}\n{out['digest']}  ({out['uploaded']} blob(s) uploaded, "
                                f"{out['skipped']} present)")


def cmd_publish(a) -> int:
    from packager.display import table
    from packager.publish import publish

    r = publish(a.spec, registry=a.registry, store=a.store, plain_http=a.plain_http, replaces=a.replaces,
                created_by=a.created_by, with_chart=not a.no_chart, source=a.source, revision=a.revision,
                ops=ops_client(a, required=False), sign_key=a.sign_key, progress=progress(a),
                engine_image_source=a.engine_image, with_engine_image=not a.no_engine_image)
    signed = [f"signed; check with: packager verify {r['pipeline_url']} --key PUBLIC_KEY"] if a.sign_key else []
    unpublished = [f"engine image not published (--no-engine-image): {r['engine_url']} must reach the registry "
                   "before these commands run (packager image build && packager image push --registry ...)"
                   ] if a.registry and a.no_engine_image else []
    return emit(a, r, lambda: [table(r), *signed, *unpublished])


def cmd_publishes(a) -> int:
    from packager.publish import publishes

    rs = publishes(a.pipeline, registry=a.registry, store=a.store, plain_http=a.plain_http)
    return emit(a, {"publishes": rs}, lambda: [
        f"{r['pipeline_name']}  {r['pipeline_version']}  {r['status']}  {r['created_at']}  {r['pipeline_url']}"
        for r in rs] or ["no publishes"])


def cmd_pull(a) -> int:
    from joey.names import parse
    from joey.transfer import open_target, pull_to_dir

    ref = parse(a.ref)
    src = open_target(ref, store=a.store, plain_http=a.plain_http)
    pulled = pull_to_dir(src, ref.repository, ref.reference, Path(a.out), progress=progress(a))
    out = {"reference": a.ref, "digest": pulled.manifest.digest, "out": str(a.out),
           "files": {k: str(v) for k, v in pulled.files.items()}}
    return emit(a, out, lambda: [pulled.manifest.digest, *(f"  {p}" for p in pulled.files.values())])
