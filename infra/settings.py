"""The stack's settings: every `joey:` config key, parsed once into typed, validated objects.

Pulumi.yaml declares each key with its description and default, and the Pulumi CLI fills in the defaults
before the program starts, so this module has none of its own: every key is required here, and a key that
Pulumi.yaml does not declare is refused. Secrets arrive as pydantic SecretStr and leave only as secret
Outputs (`secret()`); a secret key whose stack value was not encrypted (`pulumi config set --secret`) is
refused, so a password never sits in plain text in a stack file.
"""
from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal

import pulumi
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from joey import names, quantity
from joey.deployment import DeploymentSpec
from joey.errors import ConfigError
from joey.names import is_dns_label, is_host
from joey.pipeline_config import EngineConfig

PROJECT = "joey"
_DIGEST_REF = re.compile(r"^[^\s@]+@sha256:[a-f0-9]{64}$")
_REPO_PATH = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The longest edge name whose namespace, edge-<name>, is still a DNS-1123 label.
MAX_EDGE_NAME = 58


def _dns_label(v: str) -> str:
    if not is_dns_label(v):
        raise ValueError("must be a DNS-1123 label: lower-case letters, digits and '-', at most 63 characters")
    return v


def _pinned(v: str) -> str:
    if not _DIGEST_REF.match(v):
        raise ValueError("must be pinned by digest: REPOSITORY@sha256:<64 hex digits>")
    return v


def _host(v: str) -> str:
    if not is_host(v):
        raise ValueError("must be HOST or HOST:PORT (localhost, a dotted name, or NAME:PORT), without a scheme "
                         "or path")
    return v


def _repo_path(v: str) -> str:
    if not _REPO_PATH.match(v):
        raise ValueError("must be a repository path: lower-case segments separated by '/'")
    return v


def _memory(v: str) -> str:
    quantity.memory_bytes(v)
    return v


def _url(v: str) -> str:
    if v and not re.match(r"^https?://[^\s/]+(/\S*)?$", v):
        raise ValueError("must be an http:// or https:// URL")
    return v.rstrip("/")


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
PinnedImage = Annotated[str, AfterValidator(_pinned)]
Host = Annotated[str, AfterValidator(_host)]
RepoPath = Annotated[str, AfterValidator(_repo_path)]
Quantity = Annotated[str, AfterValidator(_memory)]
Url = Annotated[str, AfterValidator(_url)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class Publish(_Model):
    """One pipeline publish the stack deploys: what `packager publish` printed."""

    id: int | None = Field(None, ge=1, description="Ops publish id; needed to enroll edges through Ops.")
    pipeline: DnsLabel
    version: str = Field(pattern=_VERSION.pattern)
    engine: DeploymentSpec
    engine_image: PinnedImage | None = None

    @property
    def engine_config(self) -> EngineConfig:
        e = self.engine
        return EngineConfig(cpus=e.cpus, memory=e.memory, gpus=e.gpus, arch=e.arch, accel=e.accel)

    def pipeline_url(self, registry_host: str, registry_namespace: str) -> str:
        return str(names.pipeline_ref(self.pipeline, self.version, host=registry_host, namespace=registry_namespace))

    def chart_url(self, registry_host: str, registry_namespace: str) -> str:
        return names.chart_url(self.pipeline, host=registry_host, namespace=registry_namespace)

    @property
    def chart_version(self) -> str:
        return names.chart_version(self.version)


class Edge(_Model):
    """One edge location: a Kubernetes namespace with the publish's chart, or a Docker host."""

    name: DnsLabel = Field(max_length=MAX_EDGE_NAME)
    publish: str
    kind: Literal["kubernetes", "docker"] = "kubernetes"
    tags: tuple[str, ...] = ()
    namespace: DnsLabel | None = None
    storage_size: Quantity = "1Gi"
    docker_host: str | None = None
    port: int = Field(8080, ge=1, le=65535)
    persist_dir: str | None = None

    @property
    def k8s_namespace(self) -> str:
        return self.namespace or f"edge-{self.name}"

    @model_validator(mode="after")
    def _kind_fields(self) -> Edge:
        if self.kind == "docker" and not self.docker_host:
            raise ValueError("a docker edge needs dockerHost (e.g. ssh://user@device or unix:///var/run/docker.sock)")
        if self.kind == "kubernetes" and (self.docker_host or self.persist_dir):
            raise ValueError("dockerHost and persistDir apply to docker edges only")
        if self.persist_dir is not None and not self.persist_dir.startswith("/"):
            raise ValueError("persistDir must be an absolute path on the Docker host")
        return self


class OpsPostgres(_Model):
    """A PostgreSQL for Ops run by an operator already in the cluster: CloudNativePG's Cluster."""

    operator: Literal["cnpg"] = "cnpg"
    instances: int = Field(2, ge=1, le=9)
    storage_size: Quantity = "10Gi"


class OpsObjectStore(_Model):
    """The S3-compatible store Ops rolls logs past its hot window into (opscenter/rollup.py)."""

    endpoint: Url = ""             # empty for AWS S3 itself
    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    prefix: str = Field("", pattern=r"^[A-Za-z0-9!_.*'()/-]*$")


class ObjectStoreCredentials(_Model):
    access_key_id: SecretStr
    secret_access_key: SecretStr


class StackConfig(_Model):
    """Every `joey:` key of Pulumi.yaml, by its camelCase name there."""

    namespace: DnsLabel
    ingress_class_name: str
    storage_class: str

    registry_mode: Literal["cluster", "external"]
    registry_host: Host
    registry_namespace: RepoPath
    registry_username: str = Field(min_length=1)
    registry_password: SecretStr | None
    registry_image: PinnedImage
    registry_storage_size: Quantity
    registry_ingress: bool
    registry_tls_secret: DnsLabel

    engine_image: PinnedImage | None
    build_engine_image: bool
    engine_build_context: str
    engine_base_image: str
    engine_image_repository: RepoPath
    engine_image_tag: str = Field(pattern=_VERSION.pattern)
    engine_platform: str
    verify_key: str = ""          # PEM public key the engines verify publishes with (not a secret)

    ops_mode: Literal["cluster", "external", "none"]
    ops_host: str
    ops_url: Url
    ops_token: SecretStr | None
    ops_image: PinnedImage | None
    ops_database_url: SecretStr | None
    ops_storage_size: Quantity
    ops_tls_secret: DnsLabel
    ops_replicas: int = Field(ge=1, le=100)
    ops_max_replicas: int = Field(ge=1, le=100)
    ops_postgres: OpsPostgres | None
    ops_object_store: OpsObjectStore | None
    ops_object_store_credentials: ObjectStoreCredentials | None

    publishes: dict[str, Publish]
    edges: tuple[Edge, ...]
    edge_bundles: dict[str, SecretStr]

    @field_validator("engine_image", "ops_image", "registry_password", "ops_token", "ops_database_url",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("ops_postgres", "ops_object_store", "ops_object_store_credentials", mode="before")
    @classmethod
    def _empty_object_is_unset(cls, v: Any) -> Any:
        return None if v == {} else v

    @property
    def ops_on_postgres(self) -> bool:
        return self.ops_postgres is not None or self.ops_database_url is not None

    @property
    def ops_endpoint(self) -> str:
        """The URL Pulumi (enrolling edges) and the edges reach Ops at."""
        return self.ops_url or (f"https://{self.ops_host}" if self.ops_host else "")

    def edge_bundle(self, edge: str) -> SecretStr | None:
        return self.edge_bundles.get(edge)

    def enrolls_through_ops(self, edge: Edge) -> bool:
        """An edge without a bundle in edgeBundles gets one from Ops, when the stack has an Ops center."""
        return edge.name not in self.edge_bundles and self.ops_mode != "none"

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        problems: list[str] = []
        if self.registry_mode == "external" and self.registry_password is None:
            problems.append("registryPassword: required with registryMode=external")
        if self.registry_mode == "cluster" and self.registry_password is not None:
            problems.append("registryPassword: the cluster registry's password is generated; remove it "
                            "(read it with `pulumi stack output registryPassword --show-secrets`)")
        if self.build_engine_image and self.engine_image:
            problems.append("engineImage: set either engineImage or buildEngineImage, not both")
        if self.ops_mode == "cluster":
            if not is_host(self.ops_host):
                problems.append("opsHost: required with opsMode=cluster: the public host of the edge ingress")
            if not (self.ops_image or self.engine_image or self.build_engine_image):
                problems.append("opsImage: required with opsMode=cluster unless engineImage or buildEngineImage "
                                "gives the Joey image")
        if self.ops_postgres is not None and self.ops_database_url is not None:
            problems.append("opsPostgres: set either opsPostgres (an operator's cluster) or opsDatabaseUrl, not both")
        if self.ops_replicas > 1 and not self.ops_on_postgres:
            problems.append("opsReplicas: more than one replica needs PostgreSQL (opsPostgres or opsDatabaseUrl); "
                            "SQLite on a claim serves one")
        if self.ops_max_replicas < self.ops_replicas:
            problems.append("opsMaxReplicas: must be at least opsReplicas")
        if (self.ops_object_store is None) != (self.ops_object_store_credentials is None):
            problems.append("opsObjectStoreCredentials: set together with opsObjectStore")
        if self.ops_mode == "external" and not self.ops_url:
            problems.append("opsUrl: required with opsMode=external")
        names = [e.name for e in self.edges]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"edges: the name {dup!r} is used twice; edge names are unique")
        for i, edge in enumerate(self.edges):
            publish = self.publishes.get(edge.publish)
            if publish is None:
                problems.append(f"edges[{i}].publish: {edge.publish!r} is not a key of publishes "
                                f"({', '.join(sorted(self.publishes)) or 'none defined'})")
                continue
            if not (publish.engine_image or self.engine_image or self.build_engine_image):
                problems.append(f"publishes.{edge.publish}.engineImage: edge {edge.name!r} needs an engine image "
                                "(or set engineImage / buildEngineImage for the stack)")
            if self.enrolls_through_ops(edge):
                if publish.id is None:
                    problems.append(f"publishes.{edge.publish}.id: edge {edge.name!r} enrolls through Ops, "
                                    "which needs the publish id")
                if self.ops_mode == "external" and self.ops_token is None:
                    problems.append(f"opsToken: edge {edge.name!r} enrolls through the external Ops center, "
                                    "which needs its admin token")
        for name in sorted(set(self.edge_bundles) - set(names)):
            problems.append(f"edgeBundles.{name}: no edge of that name")
        if problems:
            raise ValueError("; ".join(problems))
        return self


SECRET_KEYS = frozenset({"registryPassword", "opsToken", "opsDatabaseUrl", "edgeBundles",
                         "opsObjectStoreCredentials"})
_OBJECT_KEYS = frozenset({"publishes", "edges", "edgeBundles", "opsPostgres", "opsObjectStore",
                          "opsObjectStoreCredentials"})
_BOOL_KEYS = frozenset({"registryIngress", "buildEngineImage"})


def config_keys() -> list[str]:
    """The `joey:` keys, as Pulumi.yaml names them."""
    return [f.alias or name for name, f in StackConfig.model_fields.items()]


def parse(raw: Mapping[str, str], secret_keys: Collection[str]) -> StackConfig:
    """StackConfig from config values as Pulumi hands them to a program: strings (JSON for objects), keyed
    without the `joey:` prefix; `secret_keys` names those whose stack value was encrypted."""
    declared = set(config_keys())
    issues = [f"{PROJECT}:{k}: not declared in Pulumi.yaml" for k in sorted(set(raw) - declared)]
    issues += [f"{PROJECT}:{k}: missing (Pulumi.yaml declares a default for every optional key; "
               "is this Pulumi.yaml the one next to the stack files?)" for k in sorted(declared - set(raw))]
    values: dict[str, Any] = {}
    for key in sorted(declared & set(raw)):
        text = raw[key]
        if key in SECRET_KEYS and text not in ("", "{}") and key not in secret_keys:
            issues.append(f"{PROJECT}:{key}: is a secret but its stack value is plain text; "
                          f"set it with `pulumi config set --secret {PROJECT}:{key} ...`")
            continue
        try:
            values[key] = _decode(key, text)
        except ValueError as e:
            issues.append(f"{PROJECT}:{key}: {e}")
    if issues:
        raise ConfigError("stack config", "\n  ".join(["", *issues]))
    try:
        return StackConfig.model_validate(values)
    except ValidationError as e:
        raise ConfigError("stack config", "\n  ".join(["", *(_issue(err) for err in e.errors())])) from None


def from_pulumi() -> StackConfig:
    """The running stack's settings."""
    config = pulumi.Config(PROJECT)
    raw = {key: value for key in config_keys() if (value := config.get(key)) is not None}
    secret = {key for key in config_keys() if pulumi.runtime.is_config_secret(f"{PROJECT}:{key}")}
    return parse(raw, secret)


def secret(value: SecretStr) -> pulumi.Output[str]:
    """A secret setting as a Pulumi secret: encrypted in the state, masked in every display."""
    return pulumi.Output.secret(value.get_secret_value())


def _decode(key: str, text: str) -> Any:
    if key in _OBJECT_KEYS:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"expected a YAML/JSON object or list ({e.msg})") from None
    if key in _BOOL_KEYS:
        if text not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text == "true"
    return text


def _issue(err: dict) -> str:
    loc = err["loc"]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    where = f"{PROJECT}:{path}" if path else PROJECT
    message = err["msg"].removeprefix("Value error, ")
    # Never echo a value back: it may be a secret, or hold one.
    return f"{where}: {message}"
