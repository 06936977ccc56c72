"""Run the Pulumi program offline, as `pulumi up` would, with Pulumi's mocks in place of the engine.

`load_stack(name)` reads Pulumi.yaml and stacks/Pulumi.NAME.yaml the way the CLI does (project defaults
applied, every value a string, objects as JSON) and puts a generated test secret wherever the stack file has
a `secure:` value, marking that key secret. `run_program(stack)` runs infra's program against a mock
monitor that records every resource registration on the wire, secret markers included, so tests can tell a
Pulumi secret from a plain value, and the mocks answer with the outputs the program reads back.
"""
from __future__ import annotations

import copy
import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks

from infra import settings
from joey.bundle import EdgeBundle

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILE = ROOT / "Pulumi.yaml"
STACKS_DIR = ROOT / "stacks"
STACK_NAMES = ("dev", "ops", "edge-store-042")
# Pulumi's wire marker of a secret value (sdk/go/common/resource/properties.go).
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
REDACTED = "[secret]"
DYNAMIC_PREFIX = "pulumi-python:dynamic"


def project() -> dict[str, Any]:
    return yaml.safe_load(PROJECT_FILE.read_text())


def stack_file(name: str) -> Path:
    return STACKS_DIR / f"Pulumi.{name}.yaml"


@dataclass
class StackInput:
    name: str
    config: dict[str, str]                 # "joey:key" -> value as the CLI hands it to a program
    secret_keys: set[str]                  # "joey:key" whose stack value is encrypted
    injected: dict[str, str] = field(default_factory=dict)   # where a test secret went -> the secret

    def raw(self) -> dict[str, str]:
        """The `joey:` values keyed without the prefix, as settings.parse takes them."""
        return {k.split(":", 1)[1]: v for k, v in self.config.items() if k.startswith("joey:")}

    def secret_names(self) -> set[str]:
        return {k.split(":", 1)[1] for k in self.secret_keys if k.startswith("joey:")}


def _as_cli_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _inject(value: Any, where: str, injected: dict[str, str]) -> tuple[Any, bool]:
    """`value` with every {secure: ...} replaced by a fresh test secret; whether there was one."""
    if isinstance(value, dict) and set(value) == {"secure"}:
        secret = f"test-secret-{secrets.token_hex(12)}"
        injected[where] = secret
        return secret, True
    if isinstance(value, dict):
        out, found = {}, False
        for k, v in value.items():
            out[k], f = _inject(v, f"{where}.{k}", injected)
            found |= f
        return out, found
    if isinstance(value, list):
        out_list, found = [], False
        for i, v in enumerate(value):
            item, f = _inject(v, f"{where}[{i}]", injected)
            out_list.append(item)
            found |= f
        return out_list, found
    return value, False


def config_from(stack_config: dict[str, Any], name: str = "test") -> StackInput:
    """What the CLI would hand the program for a stack file's `config:` mapping."""
    config: dict[str, str] = {}
    for key, decl in (project().get("config") or {}).items():
        full = key if ":" in key else f"joey:{key}"
        if "default" in decl:
            config[full] = _as_cli_string(decl["default"])
    stack = StackInput(name, config, set())
    for key, value in stack_config.items():
        plain, secret = _inject(value, key, stack.injected)
        stack.config[key] = _as_cli_string(plain)
        if secret:
            stack.secret_keys.add(key)
    return stack


def load_stack(name: str) -> StackInput:
    return config_from(yaml.safe_load(stack_file(name).read_text())["config"], name)


# ---------------------------------------------------------------- what the mocks saw


def plain(value: Any) -> Any:
    """A wire value with its secret markers removed."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return plain(value.get("value"))
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return _int(value)


def redacted(value: Any) -> Any:
    """A wire value with every secret replaced by REDACTED: what the program exposes in plain text."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return REDACTED
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return _int(value)


def secret_paths(value: Any, path: tuple = ()) -> set[tuple]:
    """Paths of the values under a secret marker (a whole secret subtree counts at its root)."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return {path}
        return set().union(*(secret_paths(v, (*path, k)) for k, v in value.items())) if value else set()
    if isinstance(value, list):
        return set().union(*(secret_paths(v, (*path, i)) for i, v in enumerate(value))) if value else set()
    return set()


def _int(value: Any) -> Any:
    # The wire has only doubles; Kubernetes schemas want integers where they were written as integers.
    return int(value) if isinstance(value, float) and value.is_integer() else value


@dataclass
class Seen:
    """One resource registration: its type, name, parent URN and inputs on the wire."""

    type: str
    name: str
    parent: str
    wire: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> dict[str, Any]:
        return plain(self.wire)

    @property
    def secrets(self) -> set[tuple]:
        return secret_paths(self.wire)

    def is_secret(self, *path: Any) -> bool:
        return any(path[:len(p)] == p for p in self.secrets)


@dataclass
class Recording:
    stack: StackInput
    resources: list[Seen] = field(default_factory=list)
    component_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)   # urn -> wire outputs
    exports: dict[str, tuple[Any, bool]] = field(default_factory=dict)           # name -> (value, is_secret)
    generated: dict[str, str] = field(default_factory=dict)                      # what -> secret the mocks made

    def of_type(self, prefix: str) -> list[Seen]:
        return [r for r in self.resources if r.type.startswith(prefix)]

    def named(self, name: str) -> Seen:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"{len(matches)} resources named {name!r}"
        return matches[0]

    def kubernetes_objects(self) -> list[dict[str, Any]]:
        """Every Kubernetes object the program declares, as `kubectl get -o json` would show its spec."""
        return [r.inputs for r in self.of_type("kubernetes:") if "kind" in r.inputs]

    def secret_values(self) -> dict[str, str]:
        """Every secret the run involved: injected from the stack, or made by the mocks (passwords, tokens,
        edge bundles and their join tokens)."""
        found = {f"stack:{k}": v for k, v in self.stack.injected.items()}
        found.update(self.generated)
        return found

    def plain_text(self) -> str:
        """Everything the program handed the engine outside a secret: inputs, component outputs, exports."""
        parts: list[Any] = [{"type": r.type, "name": r.name, "inputs": redacted(r.wire)} for r in self.resources]
        parts += [redacted(o) for o in self.component_outputs.values()]
        parts += [REDACTED if secret else value for value, secret in self.exports.values()]
        return json.dumps(parts, sort_keys=True)


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: JoeyMocks, recording: Recording):
        super().__init__(mocks)
        self.recording = recording

    def RegisterResource(self, request):
        wire = json.loads(json_format.MessageToJson(request.object)) if request.object else {}
        seen = Seen(request.type, request.name, request.parent, wire)
        self.recording.resources.append(seen)
        response = super().RegisterResource(request)
        seen.outputs = plain(json.loads(json_format.MessageToJson(response.object))) if response.object else {}
        return response

    def RegisterResourceOutputs(self, request):
        self.recording.component_outputs[request.urn] = (
            json.loads(json_format.MessageToJson(request.outputs)) if request.outputs else {})
        return super().RegisterResourceOutputs(request)


def bcrypt_hash(password: str) -> str:
    """A real bcrypt hash, as the random provider computes one (htpasswd from apache2-utils)."""
    out = subprocess.run(["htpasswd", "-nbB", "x", password], check=True, capture_output=True, text=True)
    return out.stdout.strip().split(":", 1)[1]


class JoeyMocks(pulumi.runtime.Mocks):
    """Outputs as the providers would answer: names Kubernetes objects, makes passwords and digests, and
    stands in for Ops in the OpsEdge dynamic resource (tests/infra/test_infra_ops_edge.py runs the real
    provider against a real joey-ops)."""

    def __init__(self, recording: Recording):
        self.recording = recording

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        t = args.typ
        if t == "random:index/randomPassword:RandomPassword":
            result = secrets.token_urlsafe(24)[: int(inputs.get("length", 32))]
            self.recording.generated[f"random:{args.name}"] = result
            return f"{args.name}-id", {**inputs, "result": result, "bcryptHash": bcrypt_hash(result)}
        if t == "docker:index/image:Image":
            repo = inputs["imageName"].rsplit(":", 1)[0]
            digest = _digest(args.name)
            return f"{repo}@{digest}", {**inputs, "repoDigest": f"{repo}@{digest}"}
        if t == "docker:index/remoteImage:RemoteImage":
            return f"{args.name}-id", {**inputs, "imageId": _digest(inputs["name"]), "repoDigest": inputs["name"]}
        if t.startswith(DYNAMIC_PREFIX):
            token = secrets.token_urlsafe(24)
            bundle = EdgeBundle(edge_name=inputs["edge_name"], opscenter_host="ops.mock.invalid",
                                pipeline_url="mock.invalid/joey/pipelines/p:1", join_token=token).encode()
            self.recording.generated[f"join-token:{inputs['edge_name']}"] = token
            self.recording.generated[f"bundle:{inputs['edge_name']}"] = bundle
            return inputs["edge_name"], {**inputs, "edge_bundle": bundle, "pipeline_url": "mock"}
        if t.startswith("kubernetes:") and "kind" in inputs:
            meta = dict(inputs.get("metadata") or {})
            meta.setdefault("name", f"{args.name}-{secrets.token_hex(4)}")
            return f"{meta.get('namespace', 'default')}/{meta['name']}", {**inputs, "metadata": meta}
        return f"{args.name}-id", inputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def _digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def run_program(stack: StackInput) -> Recording:
    """Run infra's program for `stack` under the mocks and return everything they saw."""
    from infra.__main__ import program

    recording = Recording(stack)
    mocks = JoeyMocks(recording)
    pulumi.runtime.settings.set_root_resource(None)
    pulumi.runtime.set_mocks(mocks, project="joey", stack=stack.name, preview=False,
                             monitor=_RecordingMonitor(mocks, recording))
    pulumi.runtime.set_all_config(stack.config, sorted(stack.secret_keys))

    @pulumi.runtime.test
    def run():
        program()
        outputs = pulumi.runtime.get_root_resource().outputs

        async def collect() -> None:
            for name, value in outputs.items():
                out = pulumi.Output.from_input(value)
                recording.exports[name] = (await out.future(), await out.is_secret())

        return collect()

    run()
    return recording


def walk(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(path, leaf) of every leaf of a JSON-like value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, (*path, i))
    else:
        yield path, value


# ---------------------------------------------------------------- the runs the tests share

KUBERNETES_VERSION = "1.30"
_RUNS: dict[str, Recording] = {}


def recorded(name: str) -> Recording:
    """The program's run for a stack file; each stack runs once per test session."""
    if name not in _RUNS:
        _RUNS[name] = run_program(load_stack(name))
    return _RUNS[name]


def variant(key: str, stack_config: dict) -> Recording:
    if key not in _RUNS:
        _RUNS[key] = run_program(config_from(stack_config, key))
    return _RUNS[key]


def stack_settings(rec: Recording) -> settings.StackConfig:
    return settings.parse(rec.stack.raw(), rec.stack.secret_names())


def edge_stack(**overrides) -> dict:
    config = copy.deepcopy(yaml.safe_load(stack_file("edge-store-042").read_text())["config"])
    config.update({f"joey:{k}": v for k, v in overrides.items()})
    return config


def docker_edges() -> Recording:
    """The edge stack with a Docker device beside the Kubernetes site, and one with a bundle given."""
    return variant("docker-edges", edge_stack(edges=[
        {"name": "store-042", "publish": "ccfraud"},
        {"name": "kiosk-7", "publish": "ccfraud", "kind": "docker", "dockerHost": "ssh://joey@kiosk-7",
         "port": 8081},
        {"name": "kiosk-8", "publish": "ccfraud", "kind": "docker", "dockerHost": "ssh://joey@kiosk-8",
         "persistDir": "/srv/joey"},
    ], edgeBundles={"kiosk-8": {"secure": "v1:x"}}))


def without_ops() -> Recording:
    return variant("no-ops", edge_stack(opsMode="none", opsUrl="", opsToken=""))


ALL_RUNS = [*STACK_NAMES, "docker-edges", "no-ops"]


def run(name: str) -> Recording:
    """The recording of a stack file, or of one of the variants above, by name."""
    return {"docker-edges": docker_edges, "no-ops": without_ops}.get(name, lambda: recorded(name))()


