"""Namespace: a Kubernetes namespace under the `restricted` Pod Security Standard.

The API server then refuses any pod that runs as root, escalates privileges or keeps capabilities, whatever
a chart or a later edit asks for: the same rule policies.py checks, enforced by the cluster itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

PSA_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@dataclass(frozen=True)
class NamespaceArgs:
    name: str
    component: str   # app.kubernetes.io/component of what lives there: control-plane or edge


class Namespace(pulumi.ComponentResource):
    name: pulumi.Output[str]

    def __init__(self, name: str, args: NamespaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("joey:infra:Namespace", name, None, opts)
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": args.name, "labels": {**PSA_LABELS, "app.kubernetes.io/part-of": "joey",
                                                    "app.kubernetes.io/component": args.component}},
            opts=pulumi.ResourceOptions(parent=self))
        self.name = ns.metadata.name
        self.register_outputs({"name": self.name})
