"""Sizes: one parser for LOCAL_INFERENCE_STORAGE, and the chart's values schema checking the same forms."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from joey import quantity

CHART_SCHEMA = Path(__file__).resolve().parents[2] / "charts" / "engine" / "values.schema.json"


@pytest.mark.parametrize("size, nbytes", [("100m", 100 * 2**20), ("1g", 2**30), ("512Mi", 512 * 2**20),
                                          ("1Gi", 2**30), ("8k", 8 * 2**10), ("1t", 2**40), ("3Ti", 3 * 2**40)])
def test_storage_sizes_in_the_seeds_forms(size, nbytes):
    assert quantity.storage_bytes(size) == nbytes


@pytest.mark.parametrize("bad", ["100M", "1G", "100", "0m", "1.5Gi", "-1Mi", "100mb", "1 Gi", "m", ""])
def test_other_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="not a size like 512Mi or 100m"):
        quantity.storage_bytes(bad)


def test_the_chart_schema_checks_the_same_forms():
    schema = json.loads(CHART_SCHEMA.read_text())
    assert schema["properties"]["localInferenceStorage"]["pattern"] == f"^({quantity.STORAGE_PATTERN})?$"
    pattern = re.compile(schema["properties"]["localInferenceStorage"]["pattern"])
    for size in ("100m", "1g", "512Mi", "1Gi"):
        assert pattern.match(size)
    assert not pattern.match("100M")
