"""The engine's environment contract, parsed once into Settings."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.settings import DEFAULT_LOG_CAPACITY, from_env
from joey.bundle import BundleError, EdgeBundle
from joey.errors import ConfigError

URL = "registry.example.com/uat/pipelines/edge-pipeline:24267587-c5df-4d43-a02b-be1e747f2e58"


def test_defaults():
    s = from_env({"PIPELINE_URL": URL})
    assert s.ref.host == "registry.example.com" and s.ref.repository == "uat/pipelines/edge-pipeline"
    assert s.ref.tag == "24267587-c5df-4d43-a02b-be1e747f2e58"
    assert (s.port, s.host, s.debug, s.plain_http) == (8080, "0.0.0.0", False, False)
    assert s.persist_dir == Path("/persist") and s.logs_dir == Path("/persist/logs")
    assert s.max_body == 64 * 2**20 and s.log_capacity == DEFAULT_LOG_CAPACITY and s.page_size is None
    assert s.partition == socket.gethostname() and s.edge_bundle is None
    assert s.cpus is None and s.threads(2.0) == 2 and s.threads(0.5) == 1


def test_seed_docker_run_environment():
    s = from_env({"PIPELINE_URL": URL, "CONFIG_CPUS": "1.0", "DEBUG": "true", "OCI_USERNAME": "u",
                  "OCI_PASSWORD": "p", "LOCAL_INFERENCE_STORAGE": "100Mi", "PLATEAU_PAGE_SIZE": "100",
                  "JOEY_PERSIST_DIR": "/data", "JOEY_MAX_BODY": "1Mi"}, port=9000)
    assert (s.cpus, s.threads(4.0), s.debug, s.username, s.password) == (1.0, 1, True, "u", "p")
    assert (s.log_capacity, s.page_size, s.max_body, s.port) == (100 * 2**20, 100, 2**20, 9000)
    assert s.persist_dir == Path("/data")


@pytest.mark.parametrize("size, capacity", [("100m", 100 * 2**20), ("1g", 2**30), ("512Mi", 512 * 2**20),
                                            ("1Gi", 2**30), ("64k", 64 * 2**10), ("2t", 2 * 2**40)])
def test_storage_sizes_as_the_seeds_write_them(size, capacity):
    s = from_env({"PIPELINE_URL": URL, "LOCAL_INFERENCE_STORAGE": size, "PLATEAU_PAGE_SIZE": "100"})
    assert s.log_capacity == capacity and s.page_size == 100


def test_engine_starts_with_seed_001_storage(one_step, tmp_path):
    """Seed 001's own `-e LOCAL_INFERENCE_STORAGE=100m`: a real engine starts, serves and logs, its store
    bounded to 100 MiB (issue 15), as /status and /metrics say."""
    from support.engine import start_engine

    eng = start_engine(one_step["pipeline_url"], tmp_path / "persist", LOCAL_INFERENCE_STORAGE="100m",
                       PLATEAU_PAGE_SIZE="100")
    try:
        assert eng.proc.poll() is None
        logs = eng.get("/status").json()["logs"]
        assert logs["next_seq"] == 0 and logs["capacity_bytes"] == 100 * 2**20 == 104857600
        gauges = {s.name: s.value for family in text_string_to_metric_families(eng.get("/metrics").text)
                  for s in family.samples}
        assert gauges["joey_engine_log_store_capacity_bytes"] == 104857600
    finally:
        eng.stop()


def test_oci_registry_supplies_a_missing_host():
    s = from_env({"PIPELINE_URL": "uat/pipelines/edge-pipeline:v1", "OCI_REGISTRY": "https://reg.local:5000"})
    assert (s.ref.host, s.ref.repository, s.ref.tag) == ("reg.local:5000", "uat/pipelines/edge-pipeline", "v1")


def test_layout_reference_and_flags():
    s = from_env({"JOEY_PLAIN_HTTP": "0"}, pipeline_url="oci:/tmp/store:pipelines/p:v1", plain_http=True)
    assert s.ref.layout == Path("/tmp/store") and s.ref.repository == "pipelines/p" and s.plain_http


def test_edge_bundle_names_the_partition_and_fills_gaps():
    bundle = EdgeBundle(edge_name="xgb-ccfraud-edge", opscenter_host="ops.example.com/edge", pipeline_url=URL,
                        join_token="3148ada5-285a-4fca-b3b8-b50a48d7511b", config_cpus="2")
    s = from_env({"EDGE_BUNDLE": bundle.encode()})
    assert s.partition == "xgb-ccfraud-edge" and s.edge_bundle == bundle
    assert s.pipeline_url == URL and s.cpus == 2.0
    s = from_env({"EDGE_BUNDLE": bundle.encode(), "PIPELINE_URL": "reg.local/x/pipelines/y:z", "CONFIG_CPUS": "3"})
    assert s.pipeline_url == "reg.local/x/pipelines/y:z" and s.cpus == 3.0


@pytest.mark.parametrize("env, name", [
    ({}, "PIPELINE_URL"),
    ({"PIPELINE_URL": "bad ref!"}, "PIPELINE_URL"),
    ({"PIPELINE_URL": URL, "CONFIG_CPUS": "0"}, "CONFIG_CPUS"),
    ({"PIPELINE_URL": URL, "CONFIG_CPUS": "nan"}, "CONFIG_CPUS"),
    ({"PIPELINE_URL": URL, "DEBUG": "yes please"}, "DEBUG"),
    ({"PIPELINE_URL": URL, "PLATEAU_PAGE_SIZE": "10"}, "LOCAL_INFERENCE_STORAGE"),
    ({"PIPELINE_URL": URL, "LOCAL_INFERENCE_STORAGE": "1Gi", "PLATEAU_PAGE_SIZE": "0"}, "PLATEAU_PAGE_SIZE"),
    ({"PIPELINE_URL": URL, "LOCAL_INFERENCE_STORAGE": "-5Mi", "PLATEAU_PAGE_SIZE": "1"}, "LOCAL_INFERENCE_STORAGE"),
    ({"PIPELINE_URL": URL, "LOCAL_INFERENCE_STORAGE": "100M", "PLATEAU_PAGE_SIZE": "1"}, "LOCAL_INFERENCE_STORAGE"),
    ({"PIPELINE_URL": URL, "LOCAL_INFERENCE_STORAGE": "0m", "PLATEAU_PAGE_SIZE": "1"}, "LOCAL_INFERENCE_STORAGE"),
    ({"PIPELINE_URL": URL, "JOEY_MAX_BODY": "lots"}, "JOEY_MAX_BODY"),
    ({"PIPELINE_URL": URL, "JOEY_PLAIN_HTTP": "sometimes"}, "JOEY_PLAIN_HTTP"),
])
def test_bad_values_name_the_variable(env, name):
    with pytest.raises(ConfigError) as e:
        from_env(env)
    assert e.value.name == name and e.value.exit_code == 2
    assert str(e.value).startswith(f"{name}: ")


def test_bad_bundle_is_a_settings_error():
    with pytest.raises(BundleError) as e:
        from_env({"PIPELINE_URL": URL, "EDGE_BUNDLE": "not base64 !!"})
    assert e.value.exit_code == 2


def test_bad_port():
    with pytest.raises(ConfigError):
        from_env({"PIPELINE_URL": URL}, port=70000)
