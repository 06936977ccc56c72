"""Float32 text as a real engine prints it: shortest round-trip digits, a tie between two shortest texts printed
as the one farther from zero (Ryu's rule: 513264.625 -> 513264.63), in the codec and through /infer."""
from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from support.engine import RECORDS, publish_spec, start_engine
from support.procs import wait_for

from engine.codecs import py_float
from engine.codecs.numbers import dump

TIES = {513264.625: "513264.63", 438514.125: "438514.13", -513264.625: "-513264.63", 0.000244140625: "0.00024414063"}


def reference(x: np.float32) -> str:
    """Shortest decimal that reads back as x (exact arithmetic), the farther from zero on a tie, in repr's layout."""
    value = Fraction(float(x))
    mantissa, exponent = math.frexp(abs(float(x)))
    ulp = Fraction(2) ** (exponent - 24)
    even = int(mantissa * 2**24) % 2 == 0
    above = ulp / 2
    below = ulp / 4 if mantissa == 0.5 else ulp / 2   # the gap below a power of two is half as wide

    def reads_back(c: Fraction) -> bool:
        gap = below if c < abs(value) else above
        return abs(c - abs(value)) < gap or (abs(c - abs(value)) == gap and even)

    top = math.floor(math.log10(abs(float(x))))
    for digits in range(1, 10):
        unit = Fraction(10) ** (top - digits + 1)
        low = math.floor(abs(value) / unit) * unit
        fits = [c for c in (low, low + unit) if reads_back(c)]
        if fits:
            best = min(fits, key=lambda c: (abs(c - abs(value)), -c))
            text = repr(float(best))   # a decimal of <= 9 digits reads back exactly: repr prints its digits
            return text if x > 0 else "-" + text
    raise AssertionError(f"no shortest text for {x!r}")


def halves(count: int, seed: int) -> np.ndarray:
    """Float32 values m / 2**p whose exact decimals have at most 10 digits: where all the ties are."""
    rng = np.random.default_rng(seed)
    p = rng.integers(2, 14, count)
    odd = rng.integers(0, np.minimum(2**23, 10**10 // 5**p)) * 2 + 1
    return (odd / 2.0**p * rng.choice([-1, 1], count)).astype(np.float32)   # exact: odd < 2**24


def test_seed_ties_print_upward():
    x = np.array(list(TIES), np.float32)
    assert dump(x).to_pybytes().decode() == "[" + ",".join(TIES.values()) + "]"
    assert [py_float(v).decode() for v in x] == list(TIES.values())


@pytest.mark.parametrize("seed", [1, 2])
def test_text_is_the_exact_reference(seed):
    rng = np.random.default_rng(seed)
    spread = (rng.normal(0, 1, 3000) * 10.0 ** rng.integers(-6, 8, 3000)).astype(np.float32)
    x = np.concatenate([halves(3000, seed), spread])
    # numpy prints the even text of a tie: it differs from the reference on some of them
    assert sum(np.format_float_positional(v, unique=True) != reference(v) for v in x[:3000]) > 100
    expected = [reference(v) for v in x]
    assert dump(x).to_pybytes().decode()[1:-1].split(",") == expected
    rows = dump(x[: len(x) // 4 * 4].reshape(-1, 4)).to_pybytes().decode()
    assert json.loads(rows) == [[float(t) for t in expected[i:i + 4]] for i in range(0, len(x) // 4 * 4, 4)]
    assert rows.replace("[", "").replace("]", "").split(",") == expected[: len(x) // 4 * 4]


def identity_model() -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Identity", ["tensor"], ["variable"])], "identity",
                              [helper.make_tensor_value_info("tensor", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("variable", TensorProto.FLOAT, ["batch", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_infer_answers_print_ties_like_a_real_engine(tmp_path, registry):
    (tmp_path / "models").mkdir()
    onnx.save(identity_model(), tmp_path / "models" / "identity.onnx")
    (tmp_path / "spec.yaml").write_text("name: float-text\nsteps:\n  - name: identity\n"
                                        "    model: models/identity.onnx\n    tensor_fields: [tensor]\n")
    record = publish_spec(tmp_path / "spec.yaml", registry)
    engine = start_engine(record["pipeline_url"], tmp_path / "persist")
    try:
        rows = [list(TIES)] * 3
        for accept in (RECORDS, None):
            r = engine.post("/infer", json.dumps([{"tensor": row} for row in rows]), RECORDS, accept)
            assert r.status_code == 200, r.text
            assert r.text.count('"variable":[' + ",".join(TIES.values()) + "]") == 3, r.text
        # Each of the 6 records logs the row twice (in.tensor, out.variable); the log store writes behind.
        wait_for("the logged rows", lambda: engine.post("/logs", b"{}", "application/json", RECORDS).text.count(
            "[" + ",".join(TIES.values()) + "]") == 12, timeout=30)
    finally:
        engine.stop()
