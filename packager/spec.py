"""The pipeline spec: one YAML document, loaded once, strictly, into typed objects.

Every problem is collected and reported together as `SPEC:LINE:COL: field.path: message` (SpecError, exit 2).
YAML is read safely: tags, anchors and aliases are refused (no `!!python/object`, no alias bombs), and a key
given twice is an error rather than a silent overwrite.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from joey import envvars, validations
from joey.deployment import DeploymentSpec, StrictModel
from joey.errors import ConfigError, ModelError, SpecError, SpecIssue
from joey.names import is_dns_label
from joey.pipeline_config import EngineConfig, ModelInfo, PipelineConfig, StepConfig
from packager.onnxmodel import inspect_model

MAX_SPEC_BYTES = 1 * 2**20
# Values one declared model input or output may hold (the product of its fixed dims, a fixed batch dim included):
# 64 MiB of float32, the engine's default body limit, so no request at the defaults could carry more. Beyond it the
# engine could not even allocate its warm-up rows (a dim of 2**40 is 8 TiB).
MAX_TENSOR_VALUES = 2**24


def _dns_label(v: str) -> str:
    if not is_dns_label(v):
        raise ValueError("must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending "
                         "with a letter or digit, at most 63 characters")
    return v


class StepSpec(StrictModel):
    name: str = Field(description="Model name, DNS-1123; also the name /models reports.")
    model: str = Field(description="Path of the ONNX file, relative to the spec file.")
    framework: Literal["onnx"] = Field("onnx", description="Only ONNX for now.")
    tensor_fields: list[str] | None = Field(
        None, min_length=1,
        description="Input columns bound, in order, to the model's inputs (the seeds' tensor_fields).")

    _name = field_validator("name")(_dns_label)


class EngineSpec(StrictModel):
    image: str | None = Field(None, description="Engine image; default: $JOEY_ENGINE_IMAGE or "
                                                "REGISTRY/engines/joey-engine:<packager version>.")


class PipelineSpec(StrictModel):
    apiVersion: Literal["joey/v1"] = "joey/v1"
    name: str = Field(description="Pipeline name, DNS-1123; the repository is pipelines/<name>.")
    workspace: str | None = Field(None, description="Free-form grouping, shown in publish records.")
    steps: list[StepSpec] = Field(min_length=1, description="Ordered; the output of step k feeds step k+1.")
    deployment: DeploymentSpec = Field(default_factory=DeploymentSpec)
    engine: EngineSpec = Field(default_factory=EngineSpec)
    validations: dict[str, str] = Field(default_factory=dict,
                                        description="name -> expression over out.<output>; see validations.py")

    _name = field_validator("name")(_dns_label)


@dataclass(frozen=True)
class LoadedSpec:
    """A spec that passed every check, with its models inspected."""

    path: Path
    spec: PipelineSpec
    config: PipelineConfig            # with version set
    model_paths: tuple[Path, ...]     # absolute, one per step

    @property
    def engine_image(self) -> str | None:
        return self.spec.engine.image


# ---------------------------------------------------------------- YAML with positions

Path_ = tuple[str | int, ...]


class _Located:
    """Plain data from a YAML node tree, with the position of every value and key."""

    def __init__(self, file: str):
        self.file = file
        self.values: dict[Path_, yaml.Mark] = {}
        self.keys: dict[Path_, yaml.Mark] = {}
        self.issues: list[SpecIssue] = []

    def issue(self, path: Path_, message: str, *, at_key: bool = False) -> None:
        mark = self.mark(path, at_key=at_key)
        self.issues.append(SpecIssue(self.file, mark.line + 1, mark.column + 1, dotted(path), message))

    def mark(self, path: Path_, *, at_key: bool = False) -> yaml.Mark:
        if at_key and path in self.keys:
            return self.keys[path]
        p = path
        while p not in self.values and p:
            p = p[:-1]
        return self.values.get(p) or yaml.Mark(self.file, 0, 0, 0, None, None)

    def build(self, node: yaml.Node, path: Path_ = ()) -> Any:
        self.values[path] = node.start_mark
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.values[path + ("?",)] = key_node.start_mark
                    self.issue(path + ("?",), "mapping keys must be plain strings")
                    continue
                key = key_node.value
                self.keys[path + (key,)] = key_node.start_mark
                if key in out:
                    self.issue(path + (key,), f"duplicate key {key!r}", at_key=True)
                    continue
                out[key] = self.build(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(n, path + (i,)) for i, n in enumerate(node.value)]
        try:
            return _SCALARS.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as e:  # e.g. `=` (the value tag), 5000-digit ints
            problem = getattr(e, "problem", None) or str(e).splitlines()[0][:120]
            self.issue(path, f"cannot read this value: {problem}")
            return None


MAX_DEPTH = 64  # a spec nests 4 levels; PyYAML's composer recurses per level


class _SafeComposer(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases, explicit tags and deep nesting while composing."""

    _depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        event = self.peek_event()
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                              event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, f"anchors (&{event.anchor}) are not allowed",
                                              event.start_mark)
        if getattr(event, "tag", None) is not None:
            raise yaml.composer.ComposerError(None, None, f"YAML tags are not allowed ({event.tag})",
                                              event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_SCALARS = yaml.SafeLoader("")


def dotted(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _read_yaml(path: Path, shown: str) -> tuple[Any, _Located]:
    loc = _Located(shown)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError([SpecIssue(shown, 1, 1, "", f"spec is {size} bytes; the limit is {MAX_SPEC_BYTES}")])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecIssue(shown, 1, 1, "", "spec file not found")]) from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as e:
        raise SpecError([SpecIssue(shown, 1, 1, "", f"cannot read the spec: {e}")]) from None
    try:
        loader = _SafeComposer(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise SpecError([SpecIssue(shown, line, col, "", f"invalid YAML: {e.problem or e.context}")]) from None
    except yaml.YAMLError as e:
        raise SpecError([SpecIssue(shown, 1, 1, "", f"invalid YAML: {e}")]) from None
    if node is None:
        raise SpecError([SpecIssue(shown, 1, 1, "", "the spec is empty; expected a mapping with name and steps")])
    data = loc.build(node)
    if not isinstance(data, dict):
        loc.issue((), "the spec must be a mapping with name and steps")
    return data, loc


# ---------------------------------------------------------------- loading

def _pydantic_issues(err: ValidationError, loc: _Located) -> None:
    for e in err.errors():
        path = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        if e["type"] == "extra_forbidden":
            loc.issue(path, f"unknown key {path[-1]!r}", at_key=True)
        elif e["type"] == "missing":
            loc.issue(path, "required field is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] in ("literal_error",):
                msg = f"{msg} (got {e.get('input')!r})"
            loc.issue(path, msg)


def load_spec(path: str | Path, *, inspect: bool = True) -> LoadedSpec:
    """Load and check a spec file. Raises SpecError listing every problem found."""
    path = Path(path)
    shown = str(path)
    data, loc = _read_yaml(path, shown)
    if loc.issues:
        raise SpecError(loc.issues)
    try:
        spec: PipelineSpec | None = PipelineSpec.model_validate(data)
        steps = list(enumerate(spec.steps))
    except ValidationError as e:
        _pydantic_issues(e, loc)
        # Go on with the steps that validate on their own, so model-file problems come in the same report.
        spec, steps = None, _valid_steps(data)

    base = path.resolve().parent
    infos: dict[int, ModelInfo] = {}
    model_paths: dict[int, Path] = {}
    seen: set[str] = set()
    for i, step in steps:
        if step.name in seen:
            loc.issue(("steps", i, "name"), f"step name {step.name!r} is used twice")
        seen.add(step.name)
        try:
            mpath = model_paths[i] = (base / step.model).resolve()
            found = mpath.is_file()
        except (OSError, ValueError) as e:  # NUL bytes, names too long, loops
            loc.issue(("steps", i, "model"), f"not a usable path: {e}")
            continue
        if not found:
            loc.issue(("steps", i, "model"), f"model file not found: {mpath}")
        elif inspect:
            try:
                infos[i] = inspect_model(mpath, step.model)
            except ModelError as e:
                loc.issue(("steps", i, "model"), e.problem)
            else:
                _check_sizes(infos[i], i, loc)

    if spec is not None and inspect:
        _check_bindings(spec, [infos.get(i) for i in range(len(spec.steps))], loc)
    if loc.issues or spec is None:
        raise SpecError(loc.issues)

    empty = ModelInfo("", 0, (), (), {}, "")
    config = PipelineConfig(
        name=spec.name, workspace=spec.workspace,
        steps=tuple(
            StepConfig(name=s.name, file=f"{s.name}.onnx", source_path=s.model, framework=s.framework,
                       tensor_fields=None if s.tensor_fields is None else tuple(s.tensor_fields),
                       model=infos.get(i, empty))
            for i, s in enumerate(spec.steps)),
        validations=dict(spec.validations),
        engine=EngineConfig(cpus=spec.deployment.cpus, memory=spec.deployment.memory, gpus=spec.deployment.gpus,
                            arch=spec.deployment.arch, accel=spec.deployment.accel),
    ).with_version()
    return LoadedSpec(path=path, spec=spec, config=config,
                      model_paths=tuple(model_paths[i] for i in range(len(spec.steps))))


def max_tensor_values() -> int:
    """$JOEY_MAX_TENSOR_VALUES, else MAX_TENSOR_VALUES."""
    setting = os.environ.get(envvars.MAX_TENSOR_VALUES, "").strip()
    if not setting:
        return MAX_TENSOR_VALUES
    if not setting.isdigit() or int(setting) < 1:
        raise ConfigError(envvars.MAX_TENSOR_VALUES, f"{setting!r} is not a positive whole number of values")
    return int(setting)


def _check_sizes(info: ModelInfo, i: int, loc: _Located) -> None:
    """Each declared input and output within max_tensor_values() (unknown and symbolic dims count as 1)."""
    limit = max_tensor_values()
    for kind, sigs in (("input", info.inputs), ("output", info.outputs)):
        for sig in sigs:
            values = math.prod(d for d in sig.shape or () if isinstance(d, int) and d > 0)
            if values > limit:
                loc.issue(("steps", i, "model"),
                          f"{kind} {sig.name!r} declares shape {list(sig.shape)}: {values} values, more than the "
                          f"limit of {limit} ({envvars.MAX_TENSOR_VALUES})")


def _valid_steps(data: Any) -> list[tuple[int, StepSpec]]:
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        return []
    out = []
    for i, raw in enumerate(data["steps"]):
        try:
            out.append((i, StepSpec.model_validate(raw)))
        except ValidationError:
            if isinstance(raw, dict) and isinstance(raw.get("model"), str):
                out.append((i, StepSpec.model_construct(name=f"\0{i}", model=raw["model"])))
    return out


def _check_bindings(spec: PipelineSpec, infos: list[ModelInfo | None], loc: _Located) -> None:
    for i, (step, info) in enumerate(zip(spec.steps, infos)):
        if info is None:
            continue
        if step.tensor_fields is not None:
            names = [s.name for s in info.inputs]
            if len(set(step.tensor_fields)) != len(step.tensor_fields):
                loc.issue(("steps", i, "tensor_fields"), "tensor_fields names a column twice")
            elif len(step.tensor_fields) != len(names):
                loc.issue(("steps", i, "tensor_fields"),
                          f"{len(step.tensor_fields)} field(s) given but the model has {len(names)} input(s) "
                          f"({', '.join(names)})")
            elif i > 0 and infos[i - 1] is not None:
                prev = {s.name for s in infos[i - 1].outputs}
                missing = [f for f in step.tensor_fields if f not in prev]
                if missing:
                    loc.issue(("steps", i, "tensor_fields"),
                              f"{', '.join(missing)} not among the outputs of step {spec.steps[i - 1].name!r} "
                              f"({', '.join(sorted(prev))})")
        if i > 0 and infos[i - 1] is not None:
            _check_chain(spec, i, infos[i - 1], info, loc)
    last = infos[-1]
    for vname, expr in spec.validations.items():
        try:
            v = validations.parse(vname, expr)
        except validations.ValidationSyntaxError as e:
            loc.issue(("validations", vname), str(e))
            continue
        if last is not None:
            outs = {s.name for s in last.outputs}
            unknown = sorted(v.outputs - outs)
            if unknown:
                loc.issue(("validations", vname), f"out.{unknown[0]} is not an output of the last step "
                                                  f"(outputs: {', '.join(sorted(outs))})")


def _check_chain(spec: PipelineSpec, i: int, prev: ModelInfo, cur: ModelInfo, loc: _Located) -> None:
    step = spec.steps[i]
    by_name = {s.name: s for s in prev.outputs}
    if step.tensor_fields is not None:
        pairs = [(by_name.get(f), s) for f, s in zip(step.tensor_fields, cur.inputs)]
    elif len(prev.outputs) != len(cur.inputs):
        loc.issue(("steps", i, "model"),
                  f"step {spec.steps[i - 1].name!r} gives {len(prev.outputs)} output(s) but this model takes "
                  f"{len(cur.inputs)} input(s); name them with tensor_fields")
        return
    else:
        pairs = list(zip(prev.outputs, cur.inputs))
    for out, inp in pairs:
        if out is None:
            continue
        if out.width is not None and inp.width is not None and out.width != inp.width:
            loc.issue(("steps", i, "model"),
                      f"input {inp.name!r} takes {inp.width} value(s) per row but output {out.name!r} of step "
                      f"{spec.steps[i - 1].name!r} gives {out.width}")
        if (out.type in _NON_NUMERIC) != (inp.type in _NON_NUMERIC):
            loc.issue(("steps", i, "model"),
                      f"input {inp.name!r} is {inp.type} but output {out.name!r} of step "
                      f"{spec.steps[i - 1].name!r} is {out.type}")


_NON_NUMERIC = {"object", "str", "string", "unknown"}
