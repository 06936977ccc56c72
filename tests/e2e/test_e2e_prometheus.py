"""Fleet metrics end to end: `joey-ops`, two engines enrolled as edges and a real Prometheus (Debian's package)
scraping all three every second; its query API then answers the engines' request counters and Ops' seconds
since each edge's check-in. The shipped alert rules pass `promtool check rules` and load into that Prometheus."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support.e2e import ENGINE_ENV, dataset, infer_all
from support.engine import start_engine
from support.procs import free_port, start, stop, wait_for, wait_http

from opscenter.metrics import METRICS_TOKEN

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "joey-alerts.yml"
SCRAPE_TOKEN = "scrape-token-for-the-e2e-test"
INFERENCES = {"shop-1": 30, "shop-2": 80}   # rows per edge; infer_all's request sizes make the request counts



def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: apt-get install -y prometheus (scripts/setup does)")
    return found


def test_the_alert_rules_pass_promtool():
    out = subprocess.run([binary("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 7 rules found" in out.stdout


@pytest.fixture()
def metrics_token(monkeypatch) -> str:
    """Ops started after this wants the token at /metrics (the Prometheus below presents it)."""
    monkeypatch.setenv(METRICS_TOKEN, SCRAPE_TOKEN)
    return SCRAPE_TOKEN


def prometheus_config(ops_url: str, engine_urls: list[str], token: str) -> str:
    engines = ", ".join(f'"{u.removeprefix("http://")}"' for u in engine_urls)
    return f"""\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: joey-engine
    static_configs: [{{targets: [{engines}]}}]
  - job_name: joey-ops
    authorization: {{credentials: "{token}"}}
    static_configs: [{{targets: ["{ops_url.removeprefix("http://")}"]}}]
"""


@pytest.fixture()
def prometheus(tmp_path):
    """start(config) -> the URL of a real Prometheus over that config, stopped after the test."""
    procs = []

    def run(config: str) -> str:
        (tmp_path / "prometheus.yml").write_text(config)
        port, log = free_port(), tmp_path / "prometheus.log"
        procs.append(start([binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                            f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                           log))
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/-/ready", ok=(200,), proc=procs[-1], log=log)
        return url
    yield run
    for proc in procs:
        stop(proc)


def inferences_answered(engine) -> float:
    """The engine's own count of /infer requests answered 200, from its /metrics."""
    (value,) = [s.value for f in text_string_to_metric_families(engine.get("/metrics").text) for s in f.samples
                if s.name == "joey_engine_http_requests_total" and s.labels == {"route": "/infer", "status": "200"}]
    return value


def query(prometheus_url: str, promql: str) -> list[dict]:
    r = requests.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    return r.json()["data"]["result"]


def test_prometheus_scrapes_the_fleet(metrics_token, ops, add_edge, prometheus, tmp_path):
    engines = {}
    try:
        for i, name in enumerate(INFERENCES):
            # Check-ins every second, so Ops has one from each edge within the test.
            engines[name] = start_engine("", tmp_path / name, EDGE_BUNDLE=add_edge(name), JOEY_PLAIN_HTTP="1",
                                         JOEY_UPDATE_INTERVAL="1", **ENGINE_ENV)
            infer_all(engines[name], dataset(INFERENCES[name], seed=i))
        requests_made = {name: inferences_answered(eng) for name, eng in engines.items()}
        url = prometheus(prometheus_config(ops.url, [e.url for e in engines.values()], metrics_token))
        instance = {e.url.removeprefix("http://"): name for name, e in engines.items()}

        def counters():
            found = {instance[r["metric"]["instance"]]: float(r["value"][1]) for r in query(
                url, 'joey_engine_http_requests_total{job="joey-engine", route="/infer", status="200"}')}
            return found if found == requests_made else None
        assert wait_for("Prometheus holding both engines' request counters", counters)

        def ages():
            found = {r["metric"]["edge"]: float(r["value"][1]) for r in query(
                url, 'joey_ops_edge_checkin_age_seconds{job="joey-ops", pipeline="e2e-ccfraud"}')}
            return found if set(found) == set(INFERENCES) else None
        assert all(age >= 0 for age in wait_for("Prometheus holding Ops' check-in age of both edges", ages).values())

        rows = query(url, 'sum(joey_engine_inference_rows_total{job="joey-engine"})')
        assert float(rows[0]["value"][1]) == sum(INFERENCES.values())
        up = {r["metric"]["job"]: r["value"][1] for r in query(url, "min by (job) (up)")}
        assert up == {"joey-engine": "1", "joey-ops": "1"}   # Ops' scrape presented the token
        groups = requests.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        assert {g["name"] for g in groups} == {"joey-fleet", "joey-engine"}
        assert all(rule["health"] in ("ok", "unknown") for g in groups for rule in g["rules"])
    finally:
        for eng in engines.values():
            assert eng.stop() == 0
