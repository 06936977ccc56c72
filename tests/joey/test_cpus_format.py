"""CONFIG_CPUS is written one way everywhere a publish's CPU count lands: the ready-to-paste commands, the
per-publish chart's values, the Ops center's EDGE_BUNDLE and the Pulumi program's workloads."""
from __future__ import annotations

import pytest

from infra import docker_edge, k8s_args
from joey.pipeline_config import EngineConfig
from joey.quantity import cpus_value, format_cpus
from opscenter.service import _cpus_text
from packager.commands import render_commands
from packager.publish import chart_values

URL = "localhost:5000/joey/pipelines/p:1"
IMAGE = "localhost:5000/joey/engines/joey-engine@sha256:" + "ab" * 32


@pytest.mark.parametrize("cpus,text", [(2.0, "2"), (2, "2"), (0.5, "0.5"), (1.25, "1.25"), (0.1 + 0.2, "0.3")])
def test_format_cpus(cpus, text):
    assert format_cpus(cpus) == text
    assert format_cpus(text) == text
    assert str(cpus_value(cpus)) == text


@pytest.mark.parametrize("cpus,text", [(2.0, "2"), (1.5, "1.5")])
def test_every_place_writes_the_same_cpus(cpus, text):
    engine = EngineConfig(cpus=cpus, memory="1Gi")
    commands = render_commands(pipeline_url=URL, engine_url=IMAGE, engine=engine, oci_registry="localhost:5000",
                               chart=None, chart_version=None)
    for kind in ("docker_run", "podman_run"):
        assert f"-e CONFIG_CPUS={text} --cpus={text} " in commands[kind]
    assert f'CONFIG_CPUS: "{text}"' in commands["compose"] and f'cpus: "{text}"' in commands["compose"]

    assert str(chart_values(URL, IMAGE, engine, "localhost:5000")["engine"]["cpus"]) == text
    values = k8s_args.engine_release_values(engine=engine, pipeline_url=URL, image=IMAGE, registry_host="r",
                                            oci_secret="s", pull_secret="p", claim="c", bundle_secret=None,
                                            bundle_sha256=None)
    assert str(values["engine"]["cpus"]) == text
    env = k8s_args.engine_container_env(engine=engine, pipeline_url=URL, registry_host="r")
    assert env["CONFIG_CPUS"] == text
    assert docker_edge.container_limits(engine)[0] == text

    # The Ops center's EDGE_BUNDLE takes CONFIG_CPUS from the record's engine_config limits.
    assert _cpus_text(engine.to_json()["engine"]["resources"]["limits"]["cpu"]) == text
