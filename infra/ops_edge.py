"""OpsEdge: an edge location registered with Ops, as a Pulumi dynamic resource.

Creating one calls Ops' add_edge_to_publish and keeps the EDGE_BUNDLE it answers (a Pulumi secret: it
carries a one-time join token); deleting one calls remove_edge. A new name, publish or tag list replaces
the edge, deleting the old one first since Ops keeps edge names unique; Ops then issues a new bundle with a
new join token, as the seeds prescribe for re-adding an edge. A new admin token only updates the state.

Pulumi runs the provider in its own process from the pickled OpsEdgeProvider, which imports this module
(and ops.client) by name: the `infra` package must be installed in the stack's virtualenv (pip install -e .).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from joey.errors import Missing
from joey.opsclient import OpsClient

# Inputs whose change means a different edge in Ops: a replacement (remove_edge, then add_edge_to_publish).
REPLACING = ("ops_url", "publish_id", "edge_name", "tags")
SECRET_OUTPUTS = ["token", "edge_bundle"]


class OpsEdgeProvider(ResourceProvider):
    """CRUD of one Ops edge. `props`: ops_url, token, publish_id, edge_name, tags."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        with OpsClient(props["ops_url"], props["token"]) as ops:
            publish = ops.add_edge(int(props["publish_id"]), props["edge_name"], list(props.get("tags") or ()))
        return CreateResult(id_=props["edge_name"], outs=_outs(props, publish))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACING if _norm(olds.get(k)) != _norm(news.get(k))]
        changed = bool(replaces) or olds.get("token") != news.get("token")
        return DiffResult(changes=changed, replaces=replaces, delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Only the admin token can change without a replacement; keep it so that delete uses the current one.
        return UpdateResult(outs={**olds, "token": news["token"]})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with OpsClient(props["ops_url"], props["token"]) as ops:
            try:
                ops.remove_edge(id_)
            except Missing:
                pass  # removed by hand already: the goal state holds


def _outs(props: dict[str, Any], publish: dict[str, Any]) -> dict[str, Any]:
    return {
        "ops_url": props["ops_url"],
        "token": props["token"],
        "publish_id": int(props["publish_id"]),
        "edge_name": props["edge_name"],
        "tags": list(props.get("tags") or ()),
        "edge_bundle": publish["docker_run_variables"]["EDGE_BUNDLE"],
        "pipeline_url": publish.get("pipeline_url"),
    }


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


@dataclass(frozen=True)
class OpsEdgeArgs:
    ops_url: pulumi.Input[str]
    token: pulumi.Input[str]      # the Ops admin token; a secret
    publish_id: int
    edge_name: str
    tags: Sequence[str] = ()


class OpsEdge(pulumi.dynamic.Resource, module="joey", name="OpsEdge"):
    edge_bundle: pulumi.Output[str]
    pipeline_url: pulumi.Output[str]

    def __init__(self, name: str, args: OpsEdgeArgs, opts: pulumi.ResourceOptions | None = None):
        props = {
            "ops_url": args.ops_url,
            "token": pulumi.Output.secret(args.token),
            "publish_id": args.publish_id,
            "edge_name": args.edge_name,
            "tags": list(args.tags),
            "edge_bundle": None,
            "pipeline_url": None,
        }
        super().__init__(OpsEdgeProvider(), name, props, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)))


BundleSource = pulumi.Output[str] | OpsEdgeArgs | None
"""Where an edge's EDGE_BUNDLE comes from: a secret stack setting, enrollment through Ops, or nowhere (an
edge that runs without Ops)."""


def edge_bundle(name: str, source: BundleSource, opts: pulumi.ResourceOptions) -> pulumi.Output[str] | None:
    """The edge's bundle as a Pulumi secret, enrolling the edge with Ops (an OpsEdge) when `source` says so."""
    if isinstance(source, OpsEdgeArgs):
        source = OpsEdge(name, source, opts).edge_bundle
    # additional_secret_outputs makes the engine encrypt it in the state; this keeps it secret in the program.
    return None if source is None else pulumi.Output.secret(source)
