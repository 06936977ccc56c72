"""The spec loader: strict, every problem at once, each with its line and column."""
from __future__ import annotations

import pytest

from joey.errors import SpecError
from packager.spec import load_spec

GOOD = """\
name: edge-pipeline
workspace: demo
steps:
  - name: ccfraud-logreg
    model: models/ccfraud-logreg.onnx
    tensor_fields: [tensor]
deployment:
  cpus: 0.5
  memory: 900Mi
validations:
  high_fraud: out.variable > 0.95
"""


def issues(path) -> list[str]:
    with pytest.raises(SpecError) as e:
        load_spec(path)
    return [str(i) for i in e.value.issues]


def test_good_spec_loads_into_typed_config(example_models, write_spec):
    loaded = load_spec(write_spec(GOOD))
    cfg = loaded.config
    assert cfg.name == "edge-pipeline" and cfg.workspace == "demo"
    step = cfg.steps[0]
    assert step.tensor_fields == ("tensor",)
    assert step.model.inputs[0].name == "tensor" and step.model.inputs[0].type == "float32"
    assert step.model.inputs[0].shape == ("batch", 29)  # symbolic dim kept
    assert step.model.opset == {"ai.onnx": 17}
    assert cfg.engine.to_json()["engine"]["resources"]["limits"] == {"cpu": 0.5, "memory": "900Mi"}
    assert len(cfg.version) == 36


def test_same_spec_same_version_and_a_changed_model_changes_it(example_models, write_spec, tmp_path):
    v1 = load_spec(write_spec(GOOD)).config.version
    assert load_spec(write_spec(GOOD, "copy.yaml")).config.version == v1
    import make_models
    (tmp_path / "models" / "ccfraud-logreg.onnx").write_bytes(
        make_models.logistic_regression(seed=99).SerializeToString())
    assert load_spec(write_spec(GOOD)).config.version != v1


def test_unknown_key_and_missing_model_are_reported_together(example_models, write_spec):
    text = GOOD.replace("workspace: demo", "workspace: demo\ncolour: blue").replace(
        "models/ccfraud-logreg.onnx", "models/missing.onnx")
    spec = write_spec(text)
    found = issues(spec)
    assert found[0] == f"{spec}:3:1: colour: unknown key 'colour'"
    assert found[1].startswith(f"{spec}:6:12: steps[0].model: model file not found:")
    assert len(found) == 2


@pytest.mark.parametrize("change, where, fragment", [
    (("name: edge-pipeline", "name: Edge_Pipeline"), "1:7: name", "DNS-1123"),
    (("name: ccfraud-logreg", "name: ccfraud logreg"), "4:11: steps[0].name", "DNS-1123"),
    (("memory: 900Mi", "memory: 900MB"), "9:11: deployment.memory", "Kubernetes quantity"),
    (("cpus: 0.5", "cpus: 0"), "8:9: deployment.cpus", "greater than 0"),
    (("cpus: 0.5", "cpus: one"), "8:9: deployment.cpus", "number"),
    (("tensor_fields: [tensor]", "tensor_fields: [a, b]"), "6:20: steps[0].tensor_fields", "2 field(s) given"),
    (("out.variable > 0.95", "out.score > 0.95"), "11:15: validations.high_fraud", "not an output"),
    (("out.variable > 0.95", "__import__('os')"), "11:15: validations.high_fraud", "unsupported"),
    (("    model: models/ccfraud-logreg.onnx\n", "    model: models/ccfraud-logreg.onnx\n    framework: tf\n"),
     "6:16: steps[0].framework", "onnx"),
])
def test_each_error_names_line_column_and_field(example_models, write_spec, change, where, fragment):
    spec = write_spec(GOOD.replace(*change))
    found = issues(spec)
    assert len(found) == 1, found
    assert found[0].startswith(f"{spec}:{where}: "), found
    assert fragment in found[0]


def test_not_onnx(example_models, write_spec, tmp_path):
    (tmp_path / "models" / "ccfraud-logreg.onnx").write_bytes(b"not a model")
    found = issues(write_spec(GOOD))
    assert "steps[0].model: not a valid ONNX model" in found[0]


@pytest.mark.parametrize("text, fragment", [
    ("name: a\nname: b\nsteps: []\n", "2:1: name: duplicate key 'name'"),
    ("name: !!python/object:os.system x\nsteps: []\n", "YAML tags are not allowed"),
    ("a: &x [1]\nb: *x\n", "anchors (&x) are not allowed"),
    ("name: [unclosed\n", "invalid YAML"),
    ("", "the spec is empty"),
    ("- a\n- b\n", "must be a mapping"),
])
def test_unsafe_or_broken_yaml(write_spec, text, fragment):
    found = issues(write_spec(text))
    assert fragment in found[0]


def test_step_chaining_is_checked(example_models, write_spec, tmp_path):
    import make_models
    # a second step taking 29 features cannot consume the first step's 1-wide output
    (tmp_path / "models" / "second.onnx").write_bytes(
        make_models.logistic_regression(input_name="x").SerializeToString())
    spec = write_spec(GOOD.replace("deployment:", "  - name: second\n    model: models/second.onnx\ndeployment:"))
    found = issues(spec)
    assert "steps[1].model: input 'x' takes 29 value(s) per row but output 'variable'" in found[0]


def test_duplicate_step_names(example_models, write_spec):
    spec = write_spec(GOOD.replace("deployment:", "  - name: ccfraud-logreg\n    model: models/ccfraud-mlp.onnx\n"
                                                   "deployment:"))
    assert any("used twice" in i for i in issues(spec))


def test_cli_reports_every_problem_with_exit_code_2_and_writes_nothing(example_models, write_spec, tmp_path):
    import subprocess
    import sys

    spec = write_spec(GOOD.replace("workspace: demo", "workspace: demo\ncolour: blue").replace(
        "models/ccfraud-logreg.onnx", "models/missing.onnx"))
    for verb in ("validate", "build", "publish"):
        out = subprocess.run([sys.executable, "-m", "packager.cli", verb, str(spec)], capture_output=True, text=True)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert lines[0] == f"{spec}:3:1: colour: unknown key 'colour'"
        assert lines[1].startswith(f"{spec}:6:12: steps[0].model: model file not found")
    assert not (tmp_path / "store").exists()
