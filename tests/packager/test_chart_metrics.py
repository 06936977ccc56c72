"""The engine chart's metrics bits, rendered by real Helm: scrape annotations on engine-svc and the optional
Prometheus Operator ServiceMonitor, whose values the strict schema checks."""
from __future__ import annotations

import pytest

from packager import chart
from packager.chart import ChartError, render

BASE = {"image": {"repository": "registry.example.com/joey/engines/joey-engine", "tag": "0.1.0"},
        "pipelineUrl": "registry.example.com/joey/pipelines/edge-pipeline:v1"}


def objects(**overrides) -> dict[str, dict]:
    return {o["kind"]: o for o in render(chart.chart_source(), chart._merge(BASE, overrides), name="shop",
                                         namespace="edge")}


def test_the_service_carries_scrape_annotations_by_default():
    objs = objects()
    assert objs["Service"]["metadata"]["annotations"] == {"prometheus.io/scrape": "true",
                                                          "prometheus.io/port": "8080",
                                                          "prometheus.io/path": "/metrics"}
    assert "ServiceMonitor" not in objs
    assert "annotations" not in objects(metrics={"scrapeAnnotations": False})["Service"]["metadata"]


def test_a_service_monitor_selects_engine_svc():
    objs = objects(metrics={"serviceMonitor": {"enabled": True, "interval": "15s",
                                               "labels": {"release": "kube-prometheus"}}})
    monitor = objs["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["selector"]["matchLabels"] == objs["Service"]["spec"]["selector"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["edge"]}
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    (port,) = objs["Service"]["spec"]["ports"]
    assert port["name"] == "http"


@pytest.mark.parametrize("bad", [{"serviceMonitor": {"interval": "soon"}}, {"scrapeAnnotations": "yes"},
                                 {"serviceMonitor": {"labels": {"release": 3}}}, {"port": 9090}])
def test_the_schema_refuses_bad_metrics_values(bad):
    with pytest.raises(ChartError, match="metrics"):
        objects(metrics=bad)
