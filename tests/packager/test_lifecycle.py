"""A publish's lifecycle: unchanged content republished with Ops is registered there, a publish that fails after
its pipeline is pushed leaves a record saying so (and the next publish completes it), and no credential in a
source URL reaches the registry or the record."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.ops import start_ops
from support.specs import one_step

from joey import record as rec
from joey.errors import ConfigError
from joey.names import record_tag
from joey.registry import Registry
from packager.publish import publish, publishes

SECRET = "glpat-Zx81SECRETtoken"


@pytest.fixture()
def ops(tmp_path):
    server = start_ops(f"sqlite:///{tmp_path / 'ops.db'}", tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _publish(spec, registry, ns, **kw):
    return publish(spec, registry=f"{registry.host}/{ns}", plain_http=True, with_engine_image=False, **kw)


def test_republishing_unchanged_content_with_ops_registers_it(example_models, write_spec, registry, ops):
    spec = write_spec(one_step())
    first = _publish(spec, registry, "late-ops")
    assert first["id"] is None
    with ops.client() as client:
        again = _publish(spec, registry, "late-ops", ops=client)
        assert isinstance(again["id"], int)
        assert client.get_publish_status(again["id"])["pipeline_digest"] == first["pipeline_digest"]
        assert again["helm"] == first["helm"]   # the chart already pushed is the one registered
    # the record beside the pipeline now carries the id, and an edge can be added to it by name
    (listed,) = publishes("edge-pipeline", registry=f"{registry.host}/late-ops", plain_http=True)
    assert listed["id"] == again["id"]
    env = {**os.environ, "JOEY_OPS_URL": ops.url, "JOEY_OPS_TOKEN": ops.token}
    out = subprocess.run([sys.executable, "-m", "packager.cli", "edge", "add",
                          f"edge-pipeline:{first['pipeline_version']}", "edge-1", "--json"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["id"] == again["id"]


def test_a_failed_chart_step_is_recorded_and_the_next_publish_completes_it(example_models, write_spec, registry,
                                                                           tmp_path, monkeypatch):
    spec = write_spec(one_step())
    monkeypatch.setenv("JOEY_CHART_DIR", str(tmp_path / "no-chart-here"))
    with pytest.raises(ConfigError, match="JOEY_CHART_DIR"):
        _publish(spec, registry, "halfway")
    (failed,) = publishes("edge-pipeline", registry=f"{registry.host}/halfway", plain_http=True)
    assert failed["status"] == "Error" and "JOEY_CHART_DIR" in failed["error"] and failed["helm"] is None
    assert set(rec.FIELDS) - {"commands"} <= set(failed)   # the seeds' fields, as every record has them

    monkeypatch.delenv("JOEY_CHART_DIR")
    done = _publish(spec, registry, "halfway")
    assert done["status"] == "Published" and done["error"] is None and done["helm"]["version"]
    (listed,) = publishes("edge-pipeline", registry=f"{registry.host}/halfway", plain_http=True)
    assert listed["status"] == "Published" and listed["pipeline_digest"] == failed["pipeline_digest"]


def test_a_token_in_the_git_remote_leaves_no_trace(example_models, write_spec, fresh_registry, tmp_path):
    spec = write_spec(one_step())
    remote = f"https://gitlab-ci-token:{SECRET}@gitlab.example.com/team/pipelines.git"
    for args in (["init", "-q"], ["remote", "add", "origin", remote], ["add", "."],
                 ["-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qm", "models"]):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    record = _publish(spec, fresh_registry, "ci")
    assert SECRET not in json.dumps(record)
    stored = rec.read_record(Registry(fresh_registry.host, plain_http=True), "ci/pipelines/edge-pipeline",
                             record_tag(record["pipeline_version"]))
    assert SECRET not in json.dumps(stored)
    blobs = list((fresh_registry.root / "docker/registry/v2/blobs").rglob("data"))
    assert blobs and not [b for b in blobs if SECRET.encode() in b.read_bytes()]
    # the source is still there, without its credentials
    manifest = json.loads(fresh_registry.blob_file(record["pipeline_digest"]).read_bytes())
    assert manifest["annotations"]["org.opencontainers.image.source"] == \
        "https://gitlab.example.com/team/pipelines.git"
