"""policies.py as a CrossGuard policy pack, for `pulumi preview --policy-pack infra/policy`.

CrossGuard hands a policy the resource inputs of one resource (or of the whole stack), with Pulumi's secret
markers already removed by the policy SDK. So the pack enforces what the inputs alone show: the
per-object Kubernetes rules, Helm values without credentials, Docker engine containers, the edge ingress and
unique edge names, Ops replicas on PostgreSQL under a PodDisruptionBudget. Two rules need what it cannot see, and are enforced by tests/infra instead: that
credentials are Pulumi *secrets* (the mocks see the markers) and that engine limits equal the publish's
engine config, which is stack configuration, not a resource (the rendered chart is checked against it).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra import policies
from infra.docker_edge import CONTAINER_PREFIX
from infra.policies import Violation

RELEASE = "kubernetes:helm.sh/v3:Release"
DOCKER_CONTAINER = "docker:index/container:Container"
DOCKER_IMAGE = "docker:index/remoteImage:RemoteImage"
PACK_NAME = "joey"


def plain(value: Any) -> Any:
    """The policy SDK's read-only proxies as plain dicts and lists (touching an unknown value during a
    preview raises its UnknownValueError, which the SDK reports as "can't run policy during preview")."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(v) for v in value]
    return value


def _report(found: Iterable[Violation], report: ReportViolation) -> None:
    for v in found:
        report(str(v))


def _kubernetes(rule: Callable[[dict], list[Violation]]):
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type.startswith("kubernetes:") and "kind" in args.props:
            _report(rule(plain(args.props)), report)
    return validate


def _release(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == RELEASE:
        _report(policies.release_values(args.name, plain(args.props.get("values") or {})), report)


def _docker_engine(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == DOCKER_CONTAINER:
        _report(policies.docker_engine(args.name, plain(args.props), None), report)


def _docker_image(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == DOCKER_IMAGE and not policies.pinned(str(args.props.get("name", ""))):
        report(f"[images-pinned] RemoteImage/{args.name}: name is not pinned by digest (REPOSITORY@sha256:...)")


def _edge_ingress(args: StackValidationArgs, report: ReportViolation) -> None:
    objects = [plain(r.props) for r in args.resources if r.resource_type.startswith("kubernetes:")]
    for svc in objects:
        labels = (svc.get("metadata") or {}).get("labels") or {}
        if svc.get("kind") == "Service" and labels.get("app.kubernetes.io/component") == "ops":
            _report(policies.edge_ingress(objects, svc["metadata"]["name"]), report)


def _ops_replicas(args: StackValidationArgs, report: ReportViolation) -> None:
    _report(policies.ops_replicas([plain(r.props) for r in args.resources
                                   if r.resource_type.startswith("kubernetes:")]), report)


def _unique_edges(args: StackValidationArgs, report: ReportViolation) -> None:
    # One name per edge: its Release or its Docker engine container (an OpsEdge names the same edge again).
    names = []
    for r in args.resources:
        if r.resource_type == RELEASE:
            names.append(str(r.props.get("name")))
        elif r.resource_type == DOCKER_CONTAINER:
            names.append(str(r.props.get("name", "")).removeprefix(CONTAINER_PREFIX))
    _report(policies.unique_edge_names(names), report)


POLICIES = [
    ResourceValidationPolicy("pod-security", "No privileged container, no privilege escalation, never root.",
                             _kubernetes(policies.pod_security)),
    ResourceValidationPolicy("images-pinned", "Every image is pinned by digest.",
                             [_kubernetes(policies.images_pinned), _docker_image]),
    ResourceValidationPolicy("secret-env", "Credentials reach containers only through Secrets (secretKeyRef).",
                             _kubernetes(policies.secret_env)),
    ResourceValidationPolicy("persist-for-bundle", "An engine with an EDGE_BUNDLE keeps /persist on a volume.",
                             _kubernetes(policies.persist_for_bundle)),
    ResourceValidationPolicy("registry-auth", "The registry requires htpasswd authentication.",
                             _kubernetes(policies.registry_auth)),
    ResourceValidationPolicy("release-values", "Helm values name Secrets, hold no credential, pin the image and "
                                               "give the engine's resources.", _release),
    ResourceValidationPolicy("docker-engine", "A Docker engine container is unprivileged, limited to its "
                                              "CONFIG_CPUS, and keeps /persist on a volume when it has an "
                                              "EDGE_BUNDLE.", _docker_engine),
    StackValidationPolicy("edge-ingress", "An Ingress routes /edge to Ops with TLS.", _edge_ingress),
    StackValidationPolicy("unique-edge-names", "Edge names are unique.", _unique_edges),
    StackValidationPolicy("ops-replicas", "Ops with replicas runs on PostgreSQL, under a PodDisruptionBudget.",
                          _ops_replicas),
]
ENFORCEMENT = EnforcementLevel.MANDATORY
