"""Conformance: the seeds' real models and data, published and served, give the seeds' numbers."""
from __future__ import annotations

import json

import pytest
from support.engine import ARROW_FILE, RECORDS, publish_spec, start_engine

pytestmark = pytest.mark.reference

SEEDS = {
    # model file, output name, rows 0-3, row 4, sha prefix
    "ccfraud-xgboost": ("variable", 1.0094898, -1.9073486e-06, "054810e3", "-1.9073486e-06"),
    "ccfraud-keras": ("dense_1", 0.99300325, 0.0010916889, "bc85ce59", "0.0010916889"),
}


@pytest.mark.parametrize("model", sorted(SEEDS))
def test_seed_models_give_the_seed_outputs(model, reference_dir, registry, tmp_path):
    output, first, fifth, sha, fifth_text = SEEDS[model]
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(f"name: edge-pipeline\nsteps:\n  - name: {model}\n"
                    f"    model: {reference_dir / 'models' / (model + '.onnx')}\n    tensor_fields: [tensor]\n")
    record = publish_spec(spec, registry)
    eng = start_engine(record["pipeline_url"], tmp_path / "persist")
    try:
        arrow = eng.post("/infer", (reference_dir / "data" / "cc_data_10k.arrow").read_bytes(), ARROW_FILE)
        assert arrow.status_code == 200, arrow.text
        records = arrow.json()
        assert len(records) == 10_254
        assert [r["out"][output] for r in records[:5]] == [[first]] * 4 + [[fifth]]
        assert f'"{output}":[{fifth_text}]' in arrow.text   # printed as the seeds print it
        last_model = json.loads(records[0]["metadata"]["last_model"])
        assert last_model["model_name"] == model and last_model["model_sha"].startswith(sha)
        assert records[0]["metadata"]["pipeline_version"] == record["pipeline_version"]

        data = (reference_dir / "data" / "cc_data_1k.df.json").read_bytes()
        rows = len(json.loads(data))   # the first rows of cc_data_10k (1,001 of them)
        from_json = eng.post("/infer", data, RECORDS).json()
        assert len(from_json) == rows
        assert [r["out"] for r in from_json] == [r["out"] for r in records[:rows]]
        assert [r["in"] for r in from_json[:5]] == [r["in"] for r in records[:5]]
    finally:
        eng.stop()
