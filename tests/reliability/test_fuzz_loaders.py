"""Scenario 12 (loaders) — the spec loader and the EDGE_BUNDLE decoder under hostile input: YAML alias bombs,
`!!python/object`, duplicate keys, bad quantities, `../` model paths, near-valid bundles with hostile values.
Only SpecError / BundleError (or, for the engine's settings, another JoeyError naming the variable) may come
out; never another exception, never a hang. tests/ops/test_ops_bundle.py fuzzes the bundle's text form; here
each key gets hostile values while the rest of the bundle stays valid."""
from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.settings import from_env
from joey.bundle import BundleError, EdgeBundle
from joey.errors import JoeyError, SpecError
from packager.spec import load_spec

GOOD = {"name": "edge-pipeline", "steps": [{"name": "ccfraud-logreg", "model": "models/ccfraud-logreg.onnx",
                                            "tensor_fields": ["tensor"]}],
        "deployment": {"cpus": 1, "memory": "900Mi"}, "validations": {"high": "out.variable > 0.95"}}

HOSTILE_YAML = {
    "billion laughs": "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)),
    "merge key alias": "base: &b {name: x}\nname: edge-pipeline\n<<: *b\nsteps: []\n",
    "python object": "name: !!python/object/apply:os.system ['touch /tmp/joey-pwned']\nsteps: []\n",
    "python name": "name: !!python/name:os.system\nsteps: []\n",
    "binary tag": "name: !!binary aGVsbG8=\nsteps: []\n",
    "local tag": "name: !custom x\nsteps: []\n",
    "duplicate top key": "name: a\nname: b\nsteps: []\n",
    "duplicate nested key": "name: a\nsteps:\n  - name: s\n    name: t\n    model: m.onnx\n",
    "complex key": "? [a, b]\n: c\nname: x\n",
    "two documents": "name: a\n---\nname: b\n",
    "deep nesting": "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep mapping": "".join("  " * i + f"k{i}:\n" for i in range(2000)),
    "tabs": "name:\tx\n\tsteps: []\n",
    "nul": "name: a\0b\n",
    "bom and crlf": "\ufeffname: edge-pipeline\r\nsteps: []\r\n",
    "bad unicode escape": 'name: "\\uZZZZ"\n',
    "value tag": "=\n",
    "huge int": f"name: edge-pipeline\nsteps: []\ndeployment: {{cpus: {'9' * 5000}}}\n",
    "float overflow": "name: edge-pipeline\nsteps: []\ndeployment: {cpus: 1e999, memory: 1e999}\n",
    "nan cpus": "name: edge-pipeline\nsteps: []\ndeployment: {cpus: .nan}\n",
    "timestamp name": "name: 2001-12-14\nsteps: []\n",
    "list root": "- a\n- b\n",
    "scalar root": "just a string\n",
    "empty": "",
    "only comment": "# nothing\n",
}


OVERFLOW = "9" * 400 + "Ei"
BAD_QUANTITIES = ["1GB", "-1Gi", "0", "0Mi", "1e999", "1e9Mi", OVERFLOW, "1.5.5Gi", "Mi", " ", "１Gi",
                  "0.0000001", "1_000Mi", "0x10Mi", "inf", "nan", True, 1, None, [], {}]
MODEL_PATHS = ["../models/ccfraud-logreg.onnx", "../../../../etc/passwd", "/etc/passwd", "/dev/zero",
               "models/../models/ccfraud-logreg.onnx", "models", "", ".", "~/x.onnx", "/proc/self/mem",
               "C:\\models\\x.onnx", 5, None, ["x"],
               "models/\0.onnx",
               "models/" + "a" * 5000 + ".onnx"]


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory, pipeline_dir) -> Path:
    """A directory with the example's models and the spec written into it, one level below `outside`."""
    root = tmp_path_factory.mktemp("fuzz-spec") / "project"
    shutil.copytree(pipeline_dir / "models", root / "models")
    return root


def loads_cleanly(spec_dir: Path, text: str) -> None:
    """load_spec either succeeds or raises SpecError: any other exception fails the test."""
    try:
        load_spec(_write(spec_dir, text))
    except SpecError as e:
        assert e.issues, "a SpecError must name at least one issue"


@pytest.mark.parametrize("text", [pytest.param(t, id=n) for n, t in HOSTILE_YAML.items()])
def test_hostile_yaml_is_a_spec_error(spec_dir, text):
    with pytest.raises(SpecError):
        load_spec(_write(spec_dir, text))
    assert not Path("/tmp/joey-pwned").exists()


def _write(spec_dir: Path, text: str) -> Path:
    path = spec_dir / "pipeline.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


@pytest.mark.parametrize("memory", BAD_QUANTITIES, ids=lambda v: repr(v)[:40])
def test_bad_memory_quantities_are_spec_errors(spec_dir, memory):
    text = yaml.safe_dump({**GOOD, "deployment": {"cpus": 1, "memory": memory}})
    with pytest.raises(SpecError) as err:
        load_spec(_write(spec_dir, text))
    assert "deployment.memory" in str(err.value)


@pytest.mark.parametrize("model", MODEL_PATHS, ids=lambda v: repr(v)[:40])
def test_hostile_model_paths_are_spec_errors(spec_dir, model):
    """Even `../models/...`, which names a real ONNX file outside the spec's directory, loads only as what it
    is (no escape into the artifact: the layer title is the step name), and everything else is refused."""
    text = yaml.safe_dump({**GOOD, "steps": [{**GOOD["steps"][0], "model": model}]})
    try:
        loaded = load_spec(_write(spec_dir, text))
    except SpecError as err:
        assert "steps[0].model" in str(err)
        return
    assert loaded.config.steps[0].file == "ccfraud-logreg.onnx"
    assert loaded.model_paths[0].is_file()


_scalar = st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.booleans(), st.none(),
                    st.sampled_from([q for q in BAD_QUANTITIES if isinstance(q, str)]),
                    st.sampled_from([m for m in MODEL_PATHS if isinstance(m, str)]))
_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=12), inner, max_size=4), max_leaves=12)
_keys = st.sampled_from(["name", "steps", "deployment", "engine", "validations", "workspace", "apiVersion",
                         "cpus", "memory", "model", "tensor_fields", "gpus", "arch", "image", "x"])


@st.composite
def mutated_specs(draw) -> dict:
    """GOOD with a few fields at any depth replaced, added or removed."""
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    for _ in range(draw(st.integers(1, 4))):
        target = spec
        path = draw(st.sampled_from([(), ("deployment",), ("steps", 0), ("validations",)]))
        for p in path:
            target = target[p] if isinstance(target, dict) and p in target or isinstance(target, list) \
                and isinstance(p, int) and p < len(target) else target
        if isinstance(target, dict):
            key = draw(_keys)
            if draw(st.booleans()) and key in target:
                del target[key]
            else:
                target[key] = draw(_value)
    return spec


@given(mutated_specs())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_mutated_specs(spec_dir, spec):
    loads_cleanly(spec_dir, yaml.safe_dump(spec, allow_unicode=True))


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example("name: &a x\nsteps: *a\n")
@example("{" * 300)
@example("name: !!python/object:builtins.dict {}\n")
def test_fuzz_arbitrary_yaml_text(spec_dir, text):
    loads_cleanly(spec_dir, text)


# ---- EDGE_BUNDLE: one hostile value in an otherwise valid bundle -----------------------------------------

VALID = {"BUNDLE_VERSION": "1", "CONFIG_CPUS": "4", "EDGE_NAME": "edge-1",
         "OPSCENTER_HOST": "http://127.0.0.1:8090/edge", "PIPELINE_URL": "127.0.0.1:5000/joey/pipelines/p:v1",
         "JOIN_TOKEN": "abcDEF123_-", "OCI_REGISTRY": "127.0.0.1:5000", "WORKSPACE_ID": "3"}
HOSTILE_VALUES = ["../../etc/passwd", "/abs/path", "a" * 5000, "-1", "1e999", "0", "0.0001", "99999.999",
                  "127.0.0.1:99999", "[::1]:80", "http://[::1]:80/edge", "https://user:pw@ops/edge", "ops/../edge",
                  "http://localhost:0/edge", "https://:80", "oci:/tmp/x:r:t", "evil.example.com/../pipelines/p:v",
                  "x:y:z", "127.0.0.1:5000/joey/pipelines/P:V", "@sha256:" + "a" * 64, "%00", "a=b=c", ",",
                  "１２", "e\u0301dge", "$(id)"]


def bundle_text(values: dict[str, str]) -> str:
    text = "\n".join(f"export {k}={v}" for k, v in values.items())
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


@given(key=st.sampled_from(sorted(VALID)), value=st.sampled_from(HOSTILE_VALUES) | st.text(max_size=60),
       drop=st.sets(st.sampled_from(["CONFIG_CPUS", "OCI_REGISTRY", "WORKSPACE_ID"])))
@settings(max_examples=400, deadline=None)
def test_fuzz_bundle_values(key, value, drop):
    values = {k: v for k, v in {**VALID, key: value}.items() if k not in drop or k == key}
    text = bundle_text(values)
    try:
        bundle = EdgeBundle.decode(text)
    except BundleError as e:
        assert str(e).startswith("EDGE_BUNDLE: ")
        if key == "JOIN_TOKEN" and len(value) > 3:
            assert value not in str(e), "a bundle error must never echo the token"
        return
    assert EdgeBundle.decode(bundle.encode()) == bundle
    # The engine reads what the bundle carries: only errors naming a setting may follow, never a crash.
    try:
        from_env({"EDGE_BUNDLE": text})
    except JoeyError as e:
        assert e.one_line()
