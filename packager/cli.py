"""`packager`: a thin command line over the library. One line per error, with a hint; tracebacks only with --debug."""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from joey import __version__
from joey.errors import JoeyError
from joey.errors import NotFound as NotFoundError


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _creds(a) -> dict:
    return {"plain_http": a.plain_http}


# ---------------------------------------------------------------- verbs

def cmd_validate(a) -> int:
    from packager.spec import load_spec

    loaded = load_spec(a.spec)
    cfg = loaded.config
    out = {"valid": True, "pipeline_name": cfg.name, "pipeline_version": cfg.version,
           "steps": [s.to_json() for s in cfg.steps]}
    if a.json:
        _print_json(out)
    else:
        print(f"{a.spec}: valid — pipeline {cfg.name} version {cfg.version}, {len(cfg.steps)} step(s)")
    return 0


def cmd_build(a) -> int:
    from packager.build import build

    b = build(a.spec, store=a.store, source=a.source, revision=a.revision)
    out = {"reference": str(b.ref), "pipeline_name": b.artifact.config.name,
           "pipeline_version": b.artifact.config.version, "digest": b.digest,
           "store": str(b.ref.layout), "blobs_written": len(b.copy.uploaded), "blobs_present": len(b.copy.skipped)}
    if a.json:
        _print_json(out)
    else:
        print(f"{out['reference']}\n{out['digest']}")
    return 0


def cmd_push(a) -> int:
    from packager.publish import destination
    from joey.names import parse
    from joey.transfer import copy, open_target

    ref = parse(a.ref)
    src = open_target(ref, store=a.store, plain_http=a.plain_http)
    dest = destination(a.registry, plain_http=a.plain_http)
    name = ref.repository.rsplit("/", 1)[-1]
    repo = dest.pipeline_repo(name)
    raw, _, _ = src.resolve(ref.repository, ref.reference)
    tag = ref.tag or _version_of(raw)
    result = copy(src, ref.repository, ref.reference, dest.target, repo, tag)
    out = {"reference": dest.url(repo, tag), "digest": result.digest, "uploaded": len(result.uploaded),
           "skipped": len(result.skipped), "bytes_uploaded": result.bytes_uploaded}
    if a.json:
        _print_json(out)
    else:
        print(f"{out['reference']}\n{out['digest']}  ({out['uploaded']} blob(s) uploaded, {out['skipped']} present)")
    return 0


def _version_of(raw: bytes) -> str:
    from joey.annotations import VERSION

    return json.loads(raw).get("annotations", {}).get(VERSION, "latest")


def cmd_publish(a) -> int:
    from packager.display import table
    from packager.publish import publish

    r = publish(a.spec, registry=a.registry, store=a.store, plain_http=a.plain_http, replaces=a.replaces,
                created_by=a.created_by, with_chart=not a.no_chart, source=a.source, revision=a.revision,
                ops=_ops(a, required=False), sign_key=a.sign_key)
    if a.json:
        _print_json(r)
    else:
        print(table(r))
        if a.sign_key:
            print(f"signed; check with: packager verify {r['pipeline_url']} --key PUBLIC_KEY")
    return 0


def cmd_publishes(a) -> int:
    from packager.publish import publishes

    rs = publishes(a.pipeline, registry=a.registry, store=a.store, plain_http=a.plain_http)
    if a.json:
        _print_json({"publishes": rs})
    else:
        for r in rs:
            print(f"{r['pipeline_name']}  {r['pipeline_version']}  {r['status']}  {r['created_at']}  {r['pipeline_url']}")
        if not rs:
            print("no publishes")
    return 0


def cmd_pull(a) -> int:
    from joey.names import parse
    from joey.transfer import open_target, pull_to_dir

    ref = parse(a.ref)
    src = open_target(ref, store=a.store, plain_http=a.plain_http)
    pulled = pull_to_dir(src, ref.repository, ref.reference, Path(a.out))
    out = {"reference": a.ref, "digest": pulled.manifest.digest, "out": str(a.out),
           "files": {k: str(v) for k, v in pulled.files.items()}}
    if a.json:
        _print_json(out)
    else:
        print(f"{pulled.manifest.digest}")
        for title, path in pulled.files.items():
            print(f"  {path}")
    return 0


def cmd_inspect(a) -> int:
    from packager.inspect import describe, render

    info = describe(a.ref, store=a.store, plain_http=a.plain_http)
    if a.json:
        _print_json(info)
    else:
        print(render(info))
    return 0


def cmd_list(a) -> int:
    from joey.layout import OCILayout, default_store

    layout = OCILayout(a.store or default_store())
    rows = []
    for name, digest in layout.entries() if layout.exists else []:
        repo, _, tag = name.rpartition(":")
        if not repo.startswith("pipelines/") or tag.startswith(("publish-", "sha256-")):
            continue
        pipeline = repo.removeprefix("pipelines/")
        if a.name and pipeline != a.name:
            continue
        rows.append({"pipeline_name": pipeline, "pipeline_version": tag, "digest": digest,
                     "reference": f"{pipeline}:{tag}"})
    if a.json:
        _print_json({"store": str(layout.root), "pipelines": rows})
    else:
        for r in rows:
            print(f"{r['reference']}  {r['digest']}")
        if not rows:
            print(f"no pipelines in {layout.root}")
    return 0


def cmd_export(a) -> int:
    from packager.airgap import export_publish

    ex = export_publish(a.publish, a.out, store=a.store, plain_http=a.plain_http)
    out = {"out": str(ex.path), "refs": ex.refs, "skipped": ex.skipped}
    if a.json:
        _print_json(out)
    else:
        for name, digest in ex.refs.items():
            print(f"{name}  {digest}")
        for what, why in ex.skipped.items():
            print(f"skipped {what}: {why}", file=sys.stderr)
        print(f"wrote {ex.path}")
    return 0


def cmd_import(a) -> int:
    from packager.airgap import import_bundle

    refs = import_bundle(a.file, a.registry, plain_http=a.plain_http)
    if a.json:
        _print_json({"refs": refs})
    else:
        for name, digest in refs.items():
            print(f"{name}  {digest}")
    return 0


def cmd_serve(a) -> int:
    """Run a pipeline locally in the engine: the seeds' "simulated edge" test before publishing."""
    import os

    from engine.app import run
    from engine.settings import from_env

    persist = a.persist or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "joey" / "serve"
    return run(from_env(pipeline_url=a.ref, host=a.host, port=a.port, plain_http=a.plain_http or None,
                        persist_dir=persist))


def cmd_keygen(a) -> int:
    from joey.signing import generate_keypair, load_signing_key

    key_path, pub_path = generate_keypair(a.out)
    out = {"private_key": str(key_path), "public_key": str(pub_path),
           "fingerprint": load_signing_key(key_path, "--out").public.fingerprint}
    if a.json:
        _print_json(out)
    else:
        print(f"private key {key_path} (keep it secret)\npublic key  {pub_path}  {out['fingerprint']}")
    return 0


def cmd_sign(a) -> int:
    from joey.names import parse
    from joey.signing import load_signing_key
    from packager.signing import sign_publish
    from joey.transfer import open_target

    ref = parse(a.ref)
    key = load_signing_key(a.key, "--key")
    signed = sign_publish(open_target(ref, store=a.store, plain_http=a.plain_http), ref, key)
    if a.json:
        _print_json({"signed": [s.to_json() for s in signed]})
    else:
        for s in signed:
            print(f"signed {s.reference} {s.digest} -> {s.tag}")
    return 0


def cmd_verify(a) -> int:
    from packager.provenance import read_provenance
    from joey.names import parse
    from joey.signing import load_public_key
    from packager.signing import verify_publish
    from joey.transfer import open_target

    ref = parse(a.ref)
    key = load_public_key(a.key, "--key")
    target = open_target(ref, store=a.store, plain_http=a.plain_http)
    verified = verify_publish(target, ref, key)
    prov = read_provenance(target, ref.repository, verified[0].digest, key)
    if a.json:
        _print_json({"verified": [v.to_json() for v in verified],
                     "provenance": None if prov is None else {"signed": prov.signed, "verified": prov.verified}})
    else:
        for v in verified:
            print(f"Verified OK: {v.reference} {v.digest} signed by {v.key}")
        print("provenance: " + ("none" if prov is None else "unsigned statement" if not prov.signed else
                                "signed, verifies with the key" if prov.verified else "signed by another key"))
    return 0


def _ops(a, *, required: bool = True):
    """An OpsClient from --ops/--ops-token or JOEY_OPS_URL/JOEY_OPS_TOKEN; None when not configured and optional."""
    import os

    from joey import envvars

    url = getattr(a, "ops", None) or os.environ.get(envvars.OPS_URL)
    if not url and not required:
        return None
    from joey.opsclient import OpsClient

    return OpsClient(url, os.environ.get(envvars.OPS_TOKEN))


def _publish_id(client, publish: str) -> int:
    """An Ops publish id, or the id of the newest publish of a pipeline reference NAME[:VERSION]."""
    if publish.isdigit():
        return int(publish)
    from joey.names import parse

    ref = parse(publish)
    name = ref.repository.rsplit("/", 1)[-1]
    pubs = client.list_publishes(name)["publishes"]
    if ref.tag:
        pubs = [p for p in pubs if p["pipeline_version"] == ref.tag]
    if not pubs:
        raise NotFoundError(f"publish {publish!r} in the Ops center", hint="`packager publishes` lists them")
    return max(pubs, key=lambda p: p["id"])["id"]


def cmd_edge_add(a) -> int:
    from packager.publish import commands_for

    with _ops(a) as client:
        pub = client.add_edge(_publish_id(client, a.publish), a.name, a.tag)
    bundle = pub["docker_run_variables"]["EDGE_BUNDLE"]
    pub["commands"] = commands_for(pub, edge_bundle=bundle, upgrade=bool(pub.get("replaces")))
    if a.json:
        _print_json(pub)
    else:
        print(f"edge {a.name} added to publish {pub['id']} ({pub['pipeline_name']} {pub['pipeline_version']})")
        print(f"EDGE_BUNDLE={bundle}\n")
        for name in ("docker_run", "helm_install"):
            if name in pub["commands"]:
                print(f"# {name} — {pub['commands']['notes'][name]}\n{pub['commands'][name]}\n")
    return 0


def cmd_edge_remove(a) -> int:
    with _ops(a) as client:
        client.remove_edge(a.name)
    if a.json:
        _print_json({"removed": a.name})
    else:
        print(f"edge {a.name} removed; its credential is revoked")
    return 0


def cmd_edge_list(a) -> int:
    with _ops(a) as client:
        edges = client.list_edges(a.pipeline)
    if a.json:
        _print_json({"edges": edges})
    else:
        for e in edges:
            print(f"{e['name']}  {e.get('pipeline_version')}  {e.get('spiffe_id')}  tags={e.get('tags')}")
        if not edges:
            print("no edges")
    return 0


def cmd_logs_export(a) -> int:
    from packager.logs_export import export_logs

    dataset = [d for d in a.dataset.split(",") if d] if a.dataset else None
    with _ops(a) as client:
        files = export_logs(client, a.pipeline, Path(a.dir), file_prefix=a.prefix, limit=a.limit,
                            partition=a.partition, dataset=dataset)
    if a.json:
        _print_json({"files": [str(f) for f in files]})
    else:
        for f in files:
            print(f)
    return 0


# ---------------------------------------------------------------- parser

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="packager", description="Build, push and publish ML pipelines for the edge.")
    p.add_argument("--version", action="version", version=f"packager {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name, func, help_, *, json_=True, store=True, net=False):
        s = sub.add_parser(name, help=help_, description=help_)
        s.set_defaults(func=func)
        if json_:
            s.add_argument("--json", action="store_true", help="print the result as JSON")
        if store:
            s.add_argument("--store", type=Path, default=None,
                           help="local OCI layout directory (default $JOEY_STORE or ~/.local/share/joey/store)")
        if net:
            s.add_argument("--plain-http", action="store_true", help="talk HTTP, not HTTPS, to the registry")
        return s

    s = verb("validate", cmd_validate, "check a pipeline spec and its models", store=False)
    s.add_argument("spec")
    for name, func, help_ in (("build", cmd_build, "build the artifact into the local store"),):
        s = verb(name, func, help_)
        s.add_argument("spec")
        s.add_argument("--source", help="org.opencontainers.image.source (default: git remote)")
        s.add_argument("--revision", help="org.opencontainers.image.revision (default: git HEAD)")
    s = verb("push", cmd_push, "push a built pipeline to a registry", net=True)
    s.add_argument("ref", help="NAME[:VERSION] in the local store, or oci:DIR:REPO:TAG")
    s.add_argument("--registry", required=True, help="HOST[:PORT]/NAMESPACE")
    s = verb("publish", cmd_publish, "build, push pipeline and chart, print the publish record", net=True)
    s.add_argument("spec")
    s.add_argument("--registry", help="HOST[:PORT]/NAMESPACE (default: the local store)")
    s.add_argument("--replaces", action="append", default=[], metavar="REF_OR_ID",
                   help="the publish this one replaces (its commands become `helm upgrade`)")
    s.add_argument("--created-by", help="who published (default user@host)")
    s.add_argument("--no-chart", action="store_true", help="skip the Helm chart")
    s.add_argument("--source", help="org.opencontainers.image.source (default: git remote)")
    s.add_argument("--revision", help="org.opencontainers.image.revision (default: git HEAD)")
    s.add_argument("--ops", help="record the publish in this Ops center (default $JOEY_OPS_URL; token from "
                                 "$JOEY_OPS_TOKEN)")
    s.add_argument("--sign-key", metavar="KEY", help="sign the pipeline, the chart and the provenance with this "
                                                     "PEM private key (docs/signing.md)")
    s = verb("publishes", cmd_publishes, "list publishes of a pipeline (from the registry or the store)", net=True)
    s.add_argument("pipeline", nargs="?")
    s.add_argument("--registry", help="HOST[:PORT]/NAMESPACE (default: the local store)")
    s = verb("pull", cmd_pull, "pull a pipeline's models and config into a directory, verified", net=True)
    s.add_argument("ref")
    s.add_argument("--out", required=True, type=Path)
    s = verb("inspect", cmd_inspect, "show manifest, config, layers, model signatures and referrers "
                                     "(signatures, provenance)", net=True)
    s.add_argument("ref")
    s = verb("export", cmd_export, "write a publish (pipeline, record, chart, engine image) to one OCI-layout tar",
             net=True)
    s.add_argument("publish", metavar="PUBLISH", help="the publish's pipeline reference (NAME:VERSION or a URL)")
    s.add_argument("--out", required=True, type=Path)
    s = verb("import", cmd_import, "push an exported tar into a registry, digests unchanged", net=True, store=False)
    s.add_argument("file", type=Path)
    s.add_argument("--registry", required=True, help="HOST[:PORT]/NAMESPACE")
    s = verb("list", cmd_list, "list pipelines in the local store")
    s.add_argument("name", nargs="?")
    s = verb("keygen", cmd_keygen, "make an ECDSA P-256 key pair: PREFIX.key (0600) and PREFIX.pub", store=False)
    s.add_argument("--out", required=True, type=Path, metavar="PREFIX")
    s = verb("sign", cmd_sign, "sign a pipeline (and the chart its publish record names), cosign-compatible",
             net=True)
    s.add_argument("ref")
    s.add_argument("--key", required=True, help="PEM private key file")
    s = verb("verify", cmd_verify, "check the signatures of a pipeline (and its chart) and its provenance", net=True)
    s.add_argument("ref")
    s.add_argument("--key", required=True, help="PEM public key file (or the PEM text)")
    s = verb("serve", cmd_serve, "serve a pipeline locally with the engine (from the store or a registry)",
             json_=False, store=False, net=True)
    s.add_argument("ref", help="NAME:VERSION in the local store, oci:DIR:REPO:TAG, or HOST/NS/pipelines/NAME:VERSION")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--persist", type=Path, help="the engine's persistent directory (default "
                                                 "~/.local/state/joey/serve)")

    edge = sub.add_parser("edge", help="edges of a publish (Ops center)").add_subparsers(dest="edge_verb",
                                                                                        required=True)
    ops_help = "the Ops center URL (default $JOEY_OPS_URL; admin token from $JOEY_OPS_TOKEN)"

    def ops_verb(parent, name, func, help_):
        s = parent.add_parser(name, help=help_, description=help_)
        s.set_defaults(func=func)
        s.add_argument("--json", action="store_true", help="print the result as JSON")
        s.add_argument("--ops", help=ops_help)
        return s

    s = ops_verb(edge, "add", cmd_edge_add, "add an edge to a publish: prints its EDGE_BUNDLE and commands")
    s.add_argument("publish", metavar="PUBLISH", help="Ops publish id, or NAME[:VERSION] (its newest publish)")
    s.add_argument("name", help="edge name (DNS-1123, unique)")
    s.add_argument("--tag", action="append", default=[], help="a tag for the edge (repeatable)")
    s = ops_verb(edge, "remove", cmd_edge_remove, "remove an edge; its credential is revoked at once")
    s.add_argument("name")
    s = ops_verb(edge, "list", cmd_edge_list, "list edges")
    s.add_argument("pipeline", nargs="?")

    logs = sub.add_parser("logs", help="inference logs collected by the Ops center").add_subparsers(
        dest="logs_verb", required=True)
    s = ops_verb(logs, "export", cmd_logs_export, "export a pipeline's logs as JSON-lines files P-1.json, ...")
    s.add_argument("--pipeline", required=True)
    s.add_argument("--partition", help="only this edge's records")
    s.add_argument("--limit", type=int)
    s.add_argument("--dataset", help="comma-separated top-level keys to keep, e.g. time,out,metadata")
    s.add_argument("--dir", required=True)
    s.add_argument("--prefix", help="file prefix (default: the pipeline name)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except JoeyError as e:
        if args.debug:
            traceback.print_exc()
        from joey.errors import SpecError

        print(str(e) if isinstance(e, SpecError) else f"error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: say so in one line, the traceback only on request
        if args.debug:
            traceback.print_exc()
        print(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
