"""The one-step pipeline spec most tests publish, written once."""
from __future__ import annotations


def one_step(name: str = "edge-pipeline", model: str = "ccfraud-logreg", *, validation: bool = False) -> str:
    """A spec whose one step is models/<model>.onnx fed by the `tensor` column; with `validation`, the
    likely_fraud check (out.variable > 0.5)."""
    text = (f"name: {name}\nsteps:\n  - name: {model}\n    model: models/{model}.onnx\n"
            "    tensor_fields: [tensor]\n")
    return text + ("validations:\n  likely_fraud: out.variable > 0.5\n" if validation else "")
