"""The engine's GET /metrics against a real engine serving a two-step pipeline from the real registry: request,
stage and step metrics move with the requests, the log store's state is read at scrape time, and every
exported name is documented in docs/engine-api.md."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.engine import ARROW_FILE, RECORDS, encode, features, publish_spec, start_engine, tensor_table

DOCS = Path(__file__).resolve().parents[2] / "docs" / "engine-api.md"


@pytest.fixture(scope="module")
def chained(pipeline_dir, registry, tmp_path_factory):
    record = publish_spec(pipeline_dir / "two.yaml", registry)
    eng = start_engine(record["pipeline_url"], tmp_path_factory.mktemp("persist"))
    yield eng, record
    eng.stop()


def scrape(eng) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics by (name, sorted labels)."""
    r = eng.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_requests_stages_and_steps_are_counted(chained):
    eng, record = chained
    before = scrape(eng)
    sizes = [1, 7, 30]
    sent = received = 0
    for i, n in enumerate(sizes):
        fmt = ARROW_FILE if i % 2 else RECORDS
        body = encode(tensor_table(features(n, seed=i)), fmt)
        path = "/infer" if i else "/pipelines/chained"
        r = eng.post(path, body, fmt)
        assert r.status_code == 200, r.text
        sent += len(body)
        received += len(r.content)
    assert eng.post("/infer", b"x", "text/csv").status_code == 415
    assert eng.get("/no/such/path").status_code == 404
    assert eng.post("/pipelines/other", body, fmt).status_code == 404
    after = scrape(eng)

    assert delta(before, after, "joey_engine_http_requests_total", route="/infer", status="200") == 2
    assert delta(before, after, "joey_engine_http_requests_total", route="/pipelines/{name}", status="200") == 1
    assert delta(before, after, "joey_engine_http_requests_total", route="/infer", status="415") == 1
    assert delta(before, after, "joey_engine_http_requests_total", route="other", status="404") == 1
    assert delta(before, after, "joey_engine_http_requests_total", route="/pipelines/{name}", status="404") == 1
    assert delta(before, after, "joey_engine_http_request_duration_seconds_count", route="/infer") == 3
    assert delta(before, after, "joey_engine_http_request_duration_seconds_bucket", route="/infer", le="+Inf") == 3
    for stage in ("decode", "encode", "log_append"):
        assert delta(before, after, "joey_engine_infer_stage_duration_seconds_count", stage=stage) == 3
        assert delta(before, after, "joey_engine_infer_stage_duration_seconds_sum", stage=stage) > 0
    for step in ("ccfraud-logreg", "calibrate"):
        assert delta(before, after, "joey_engine_model_step_duration_seconds_count", step=step) == 3
    assert delta(before, after, "joey_engine_inference_rows_total") == sum(sizes)
    assert delta(before, after, "joey_engine_infer_request_bytes_total") == sent
    assert delta(before, after, "joey_engine_infer_response_bytes_total") == received
    assert after["joey_engine_build_info", (("engine_version", "0.1.0"), ("pipeline", "chained"),
                                            ("version", record["pipeline_version"]))] == 1


def test_the_log_store_is_read_at_scrape_time(chained):
    eng, _ = chained
    eng.infer(tensor_table(features(5, seed=9)))
    samples = scrape(eng)
    stored = eng.get("/status").json()["logs"]
    # Without EDGE_BUNDLE nothing is acknowledged: every record inferred is still in the store, the backlog.
    assert samples["joey_engine_log_store_records", ()] == stored["records_stored"] == \
        samples["joey_engine_inference_rows_total", ()]
    assert samples["joey_engine_log_store_bytes", ()] == stored["bytes_stored"] > 0
    assert samples["joey_engine_log_records_dropped_total", ()] == 0
    assert samples["joey_engine_log_records_lost_total", ()] == 0
    oldest = eng.post("/logs", json.dumps({"limit": 10_000}), "application/json").json()[0]["time"]
    # The age is of the oldest record kept: the first one this engine inferred (within the ms the record keeps).
    assert abs(samples["joey_engine_log_oldest_unsent_age_seconds", ()] - (time.time() - oldest / 1000)) < 5
    assert ("joey_engine_update_attempts_total", ()) in samples
    assert not any(name.startswith("joey_engine_log_uploaded") for name, _ in samples)   # no EDGE_BUNDLE


def test_openmetrics_when_asked(chained):
    eng, _ = chained
    r = eng.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert r.text.endswith("# EOF\n")


def test_every_metric_is_documented(chained):
    eng, _ = chained
    names = re.findall(r"^# TYPE (\S+) ", eng.get("/metrics").text, re.M)
    section = DOCS.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    assert len(names) >= 20
    for name in names:
        assert f"`{name}`" in section, f"{name} is not in docs/engine-api.md, Metrics"
