"""Ops' GET /metrics: the fleet's state read from the database, refused log pages, the optional bearer token,
the assay hook, and every exported name documented in docs/ops.md. Real servers on both databases."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.edge_client import EdgeClient, OpsRejected
from joey.bundle import EdgeBundle
from opscenter import metrics
from opscenter.app import create_app

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ops.md"
RECORD = {"time": 1713880452318, "in": {"tensor": [1.0, 2.0]}, "out": {"variable": [0.5]},
          "anomaly": {"count": 0}, "metadata": {"pipeline_version": "v1", "elapsed": [1, 2], "dropped": []}}
SERVING = {"pipeline_url": "127.0.0.1:5000/joey/pipelines/ccfraud:v1", "pipeline_digest": "sha256:" + "ab" * 32,
           "pipeline_version": "v1"}


def scrape(url: str, token: str | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics by (name, sorted labels)."""
    r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"} if token else None)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def bundles(server, make_record, names: list[str]) -> list[EdgeBundle]:
    with server.client() as c:
        publish_id = c.publish(make_record("ccfraud"))["id"]
        return [EdgeBundle.decode(c.add_edge(publish_id, n)["docker_run_variables"]["EDGE_BUNDLE"]) for n in names]


def test_metrics_follow_the_fleet(clocked_ops, make_record, tmp_path):
    invited, checked_in = bundles(clocked_ops, make_record, ["shop-1", "shop-2"])
    with EdgeClient(checked_in, tmp_path / "shop-2") as edge:
        edge.checkin(SERVING)
        edge.upload_page(0, 2, [RECORD] * 3)
        with pytest.raises(OpsRejected, match="400"):
            edge.upload_page(5, 9, [RECORD])   # five seqs, one record: refused
    with clocked_ops.client() as c:
        c.publish(make_record("other"))
    clocked_ops.clock.advance(90)

    first = scrape(clocked_ops.url)
    assert first["joey_ops_edges", (("pipeline", "ccfraud"), ("state", "invited"))] == 1
    assert first["joey_ops_edges", (("pipeline", "ccfraud"), ("state", "serving"))] == 1
    assert first["joey_ops_edges", (("pipeline", "ccfraud"), ("state", "enrolled"))] == 0
    age = first["joey_ops_edge_checkin_age_seconds", (("edge", "shop-2"), ("pipeline", "ccfraud"))]
    assert 90 <= age < 120
    assert not any(name == "joey_ops_edge_checkin_age_seconds" and ("edge", "shop-1") in labels
                   for name, labels in first)   # never checked in: no sample, not an age since 1970
    assert first["joey_ops_log_records_ingested_total", (("pipeline", "ccfraud"),)] == 3
    assert first["joey_ops_log_pages_rejected_total", (("status", "400"),)] == 1
    assert first["joey_ops_publishes", (("pipeline", "ccfraud"), ("status", "Published"))] == 1
    assert first["joey_ops_publishes", (("pipeline", "other"), ("status", "Published"))] == 1
    assert first["joey_ops_build_info", (("version", "0.1.0"),)] == 1

    clocked_ops.clock.advance(1000)   # within the cached snapshot the age still follows the clock
    later = scrape(clocked_ops.url)
    assert later["joey_ops_edge_checkin_age_seconds", (("edge", "shop-2"), ("pipeline", "ccfraud"))] == age + 1000


@pytest.fixture()
def metrics_token(monkeypatch) -> str:
    """JOEY_OPS_METRICS_TOKEN for the servers started after it."""
    monkeypatch.setenv(metrics.METRICS_TOKEN, "scrape-secret-0123456789")
    return "scrape-secret-0123456789"


def test_a_metrics_token_is_required_when_set(metrics_token, clocked_ops):
    server = clocked_ops
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {server.token}"}):
        r = httpx.get(f"{server.url}/metrics", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert metrics.METRICS_TOKEN in r.json()["hint"]
    assert ("joey_ops_build_info", (("version", "0.1.0"),)) in scrape(server.url, metrics_token)


def test_assays_report_through_the_hook(tmp_path):
    app = create_app(f"sqlite:///{tmp_path}/ops.db", "admin-token-0123456789", "http://127.0.0.1:8090")
    readings = [metrics.AssayReading("psi-out", "ccfraud", "shop-1", 0.02, False),
                metrics.AssayReading("psi-out", "ccfraud", "shop-2", 0.41, True)]
    metrics.register_assay_metrics(app, lambda: readings)

    async def get() -> str:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ops") as client:
            return (await client.get("/metrics")).text

    samples = {(s.name, s.labels["partition"]): s.value for f in text_string_to_metric_families(asyncio.run(get()))
               for s in f.samples if s.name.startswith("joey_assay_")}
    assert samples == {("joey_assay_score", "shop-1"): 0.02, ("joey_assay_alert", "shop-1"): 0.0,
                       ("joey_assay_score", "shop-2"): 0.41, ("joey_assay_alert", "shop-2"): 1.0}


def test_every_metric_is_documented(clocked_ops):
    names = re.findall(r"^# TYPE (\S+) ", httpx.get(f"{clocked_ops.url}/metrics").text, re.M)
    section = DOCS.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    assert len(names) >= 9
    for name in names:
        assert f"`{name}`" in section, f"{name} is not in docs/ops.md, Metrics"
