"""Verbs on the Ops center: edge add/remove/list and logs export, and the Ops client every verb builds."""
from __future__ import annotations

import os
from pathlib import Path

from joey import envvars
from joey.errors import NotFound
from packager.cli.flags import group, verb
from packager.cli.output import emit


def register(sub) -> None:
    edge = group(sub, "edge", "edges of a publish (Ops center)")
    s = verb(edge, "add", cmd_edge_add, "add an edge to a publish: prints its EDGE_BUNDLE and commands",
             store=False, ops=True)
    s.add_argument("publish", metavar="PUBLISH", help="Ops publish id, or NAME[:VERSION] (its newest publish)")
    s.add_argument("name", help="edge name (DNS-1123, unique)")
    s.add_argument("--tag", action="append", default=[], help="a tag for the edge (repeatable)")
    s = verb(edge, "remove", cmd_edge_remove, "remove an edge; its credential is revoked at once", store=False,
             ops=True)
    s.add_argument("name")
    s = verb(edge, "list", cmd_edge_list, "list edges", store=False, ops=True)
    s.add_argument("pipeline", nargs="?")

    logs = group(sub, "logs", "inference logs collected by the Ops center")
    s = verb(logs, "export", cmd_logs_export, "export a pipeline's logs as JSON-lines files P-1.json, ...",
             store=False, ops=True)
    s.add_argument("--pipeline", required=True)
    s.add_argument("--partition", help="only this edge's records")
    s.add_argument("--limit", type=int)
    s.add_argument("--dataset", help="comma-separated top-level keys to keep, e.g. time,out,metadata")
    s.add_argument("--dir", required=True)
    s.add_argument("--prefix", help="file prefix (default: the pipeline name)")


def ops_client(a, *, required: bool = True):
    """An OpsClient from --ops/--ops-token or JOEY_OPS_URL/JOEY_OPS_TOKEN; None when not configured and optional."""
    url = getattr(a, "ops", None) or os.environ.get(envvars.OPS_URL)
    if not url and not required:
        return None
    from joey.opsclient import OpsClient

    return OpsClient(url, os.environ.get(envvars.OPS_TOKEN))


def _publish_id(client, publish: str) -> int:
    """An Ops publish id, or the id of the newest publish of a pipeline reference NAME[:VERSION]."""
    if publish.isdigit():
        return int(publish)
    from joey.names import parse, pipeline_name

    ref = parse(publish)
    pubs = client.list_publishes(pipeline_name(ref.repository))["publishes"]
    if ref.tag:
        pubs = [p for p in pubs if p["pipeline_version"] == ref.tag]
    if not pubs:
        raise NotFound(f"publish {publish!r} in the Ops center", hint="`packager publishes` lists them")
    return max(pubs, key=lambda p: p["id"])["id"]


def cmd_edge_add(a) -> int:
    from packager.publish import commands_for

    with ops_client(a) as client:
        pub = client.add_edge(_publish_id(client, a.publish), a.name, a.tag)
    bundle = pub["docker_run_variables"]["EDGE_BUNDLE"]
    pub["commands"] = commands_for(pub, edge_bundle=bundle, upgrade=bool(pub.get("replaces")))

    def text():
        yield f"edge {a.name} added to publish {pub['id']} ({pub['pipeline_name']} {pub['pipeline_version']})"
        yield f"EDGE_BUNDLE={bundle}\n"
        for name in ("docker_run", "helm_install"):
            if name in pub["commands"]:
                yield f"# {name} — {pub['commands']['notes'][name]}\n{pub['commands'][name]}\n"
    return emit(a, pub, text)


def cmd_edge_remove(a) -> int:
    with ops_client(a) as client:
        client.remove_edge(a.name)
    return emit(a, {"removed": a.name}, lambda: f"edge {a.name} removed; its credential is revoked")


def cmd_edge_list(a) -> int:
    with ops_client(a) as client:
        edges = client.list_edges(a.pipeline)
    return emit(a, {"edges": edges}, lambda: [
        f"{e['name']}  {e.get('pipeline_version')}  {e.get('spiffe_id')}  tags={e.get('tags')}" for e in edges]
        or ["no edges"])


def cmd_logs_export(a) -> int:
    from packager.logs_export import export_logs

    dataset = [d for d in a.dataset.split(",") if d] if a.dataset else None
    with ops_client(a) as client:
        files = export_logs(client, a.pipeline, Path(a.dir), file_prefix=a.prefix, limit=a.limit,
                            partition=a.partition, dataset=dataset)
    return emit(a, {"files": [str(f) for f in files]}, lambda: [str(f) for f in files])
