"""Ops as the publish service (seed 003): the packager registers a pipeline version under integer ids, then
seed 003's own requests, bodies unchanged but for ids and hosts, make Ops copy it from the build registry into
its edge registry in the background. Two real loopback registries, a real joey-ops process."""
from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys

import pytest
import requests
from support.ops import EDGE_USER, PublishingOps, start_publishing_ops
from support.procs import start, wait_for, wait_http
from support.registry import RunningRegistry, registry_binary, start_registry

from joey import mediatypes
from joey.bundle import EdgeBundle
from joey.descriptor import Descriptor, manifest_bytes
from joey.referrers import find, kind
from joey.registry import Registry
from joey.transfer import read_config

ONE = "name: edge-pipeline\nworkspace: edge-publish-api-demo\nsteps:\n  - name: ccfraud\n" \
      "    model: models/ccfraud-logreg.onnx\n    tensor_fields: [tensor]\n"
# The fields seed 003 prints for every publish, in get_publish_status, publish and list answers alike.
SEED_KEYS = {"id", "pipeline_version_id", "pipeline_version_name", "status", "created_at", "updated_at",
             "created_by", "pipeline_url", "engine_url", "helm", "engine_config", "error", "user_images",
             "docker_run_variables"}
ORDER = ["PendingPublish", "Publishing", "Published"]


@pytest.fixture()
def build_registry(tmp_path):
    reg = start_registry(tmp_path / "build-registry")
    yield reg
    reg.stop()


@pytest.fixture()
def publishing_ops(database_url, tmp_path, edge_registry):
    server = start_publishing_ops(secrets.token_urlsafe(24), database_url, tmp_path, edge_registry)
    try:
        yield server
    finally:
        server.stop()


def push_engine_image(registry: RunningRegistry) -> tuple[str, str]:
    """A small image standing in for the engine in the build registry: (reference, manifest digest)."""
    target, repo = Registry(registry.host, plain_http=True), "joey/engines/joey-engine"
    layer = b"a stand-in for the engine's file system"
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    cdesc = Descriptor.for_bytes("application/vnd.oci.image.config.v1+json", config.encode())
    ldesc = Descriptor.for_bytes("application/vnd.oci.image.layer.v1.tar", layer)
    for desc, data in ((cdesc, config.encode()), (ldesc, layer)):
        target.write_blob(repo, desc, io.BytesIO(data))
    digest = target.write_manifest(repo, "seed-test", manifest_bytes(cdesc, [ldesc], {}), mediatypes.OCI_MANIFEST)
    return f"{registry.host}/{repo}:seed-test", digest


def packager_publish(ops, registry: RunningRegistry, spec, engine_image: str | None = None) -> dict:
    """`packager publish --ops` as a user runs it: the record it prints."""
    env = {**os.environ, "JOEY_OPS_URL": ops.url, "JOEY_OPS_TOKEN": ops.token}
    if engine_image:
        env["JOEY_ENGINE_IMAGE"] = engine_image
    out = subprocess.run([sys.executable, "-m", "packager.cli", "publish", str(spec), "--registry",
                          f"{registry.host}/joey", "--plain-http", "--json"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def statuses_until_done(ops: PublishingOps, publish_id: int) -> tuple[list[str], dict]:
    """get_publish_status polled until Published or Error: the statuses seen in order, and the last answer."""
    seen: list[str] = []

    def done():
        r = ops.call("get_publish_status", {"id": publish_id})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert SEED_KEYS <= answer.keys()
        if not seen or seen[-1] != answer["status"]:
            seen.append(answer["status"])
        return answer if answer["status"] in ("Published", "Error") else None

    return seen, wait_for(f"publish {publish_id} done", done, timeout=120, every=0.02)


def ids_of(ops: PublishingOps, record: dict) -> dict:
    """The packager's record with the ids Ops gave its pipeline, version and models, found as seed 003 finds
    them (`pipeline.id()`, `pipeline.versions()[-1].id()`, `model.id()`): here through list_pipelines."""
    listed = ops.call("list_pipelines", {"pipeline_name": record["pipeline_name"]}).json()["pipelines"]
    assert [p["name"] for p in listed] == [record["pipeline_name"]]
    version = listed[0]["versions"][-1]
    assert version["name"] == record["pipeline_version"]
    assert version["pipeline_digest"] == record["pipeline_digest"]
    answer = ops.call("get_publish_status", {"id": record["id"]}).json()
    assert (answer["pipeline_id"], answer["pipeline_version_id"]) == (listed[0]["id"], version["id"])
    assert answer["model_config_ids"] == [m["id"] for m in version["model_configs"]]
    return {**record, "pipeline_id": listed[0]["id"], "pipeline_version_id": version["id"],
            "model_config_ids": [m["id"] for m in version["model_configs"]],
            "model_names": [m["model_name"] for m in version["model_configs"]]}


def seed_publish(ops: PublishingOps, record: dict) -> dict:
    """Seed 003's publish request, with the ids the packager's publish got."""
    r = ops.call("publish", {"pipeline_id": record["pipeline_id"],
                             "pipeline_version_id": record["pipeline_version_id"],
                             "model_config_ids": record["model_config_ids"]})
    assert r.status_code == 200, r.text
    return r.json()


def test_seed_003_publish_copies_into_the_edge_registry(publishing_ops, build_registry, edge_registry,
                                                        example_models, write_spec):
    engine_image, engine_digest = push_engine_image(build_registry)
    built = packager_publish(publishing_ops, build_registry, write_spec(ONE), engine_image)
    assert built["status"] == "Published"
    built = ids_of(publishing_ops, built)

    assert built["model_names"] == ["ccfraud"]
    pending = seed_publish(publishing_ops, built)
    assert SEED_KEYS <= pending.keys() and pending["status"] == "PendingPublish"
    assert (pending["pipeline_url"], pending["engine_url"], pending["helm"], pending["error"]) == (None,) * 4
    assert pending["docker_run_variables"] == {} and pending["user_images"] == []
    assert pending["pipeline_version_id"] == built["pipeline_version_id"]
    assert pending["pipeline_version_name"] == built["pipeline_version"]
    assert pending["engine_config"]["engine"]["resources"]["arch"] == "x86"

    seen, published = statuses_until_done(publishing_ops, pending["id"])
    assert published["status"] == "Published" and published["error"] is None, published["error"]
    assert seen == [s for s in ORDER if s in seen] and seen[-1] == "Published"
    edge_host = f"{edge_registry.host}/edge"
    assert published["pipeline_url"] == f"{edge_host}/pipelines/edge-pipeline:{built['pipeline_version']}"
    # The same image, named as the record named it (the packager may pin its digest).
    assert published["engine_url"] == built["engine_url"].replace(f"{build_registry.host}/joey", edge_host)
    assert published["engine_url"].startswith(f"{edge_host}/engines/joey-engine")
    assert published["helm"]["chart"] == f"oci://{edge_host}/charts/edge-pipeline"
    assert published["helm"]["values"]["pipelineUrl"] == published["pipeline_url"]
    assert published["docker_run_variables"] == {"PIPELINE_URL": published["pipeline_url"]}
    assert (published["created_at"], published["pipeline_version_id"]) == (pending["created_at"],
                                                                           pending["pipeline_version_id"])

    # The edge registry holds pipeline, chart and engine under the build registry's digests.
    build = Registry(build_registry.host, plain_http=True)
    edge = Registry(edge_registry.host, plain_http=True, username=EDGE_USER, password=edge_registry.password)
    version_tag, chart_tag = built["pipeline_version"], built["helm"]["version"]
    assert edge.resolve("edge/pipelines/edge-pipeline", version_tag)[2] == built["pipeline_digest"] == \
        build.resolve("joey/pipelines/edge-pipeline", version_tag)[2]
    assert edge.resolve("edge/charts/edge-pipeline", chart_tag)[2] == \
        build.resolve("joey/charts/edge-pipeline", chart_tag)[2]
    assert published["helm"]["reference"] == f"{edge_host}/charts@{edge.resolve('edge/charts/edge-pipeline', chart_tag)[2]}"
    assert edge.resolve("edge/engines/joey-engine", engine_digest)[2] == engine_digest
    # What the packager attached to the pipeline travels with it, listed in the edge's referrers index too.
    attached = {(r.digest, kind(r.artifact_type)) for r in find(build, "joey/pipelines/edge-pipeline",
                                                                built["pipeline_digest"])}
    assert {"provenance", "sbom", "publish record"} <= {k for _, k in attached}
    assert {(r.digest, kind(r.artifact_type)) for r in find(edge, "edge/pipelines/edge-pipeline",
                                                            built["pipeline_digest"])} == attached
    # engine_config in the seeds' shape, in the config blob as in Ops.
    _, blob = read_config(edge, "edge/pipelines/edge-pipeline", version_tag)
    assert json.loads(blob)["engine_config"]["engine"]["resources"]["arch"] == "x86"
    assert json.loads(blob)["engine_config"] == published["engine_config"] == built["engine_config"]

    listed = publishing_ops.call("list_publishes_for_pipeline", {"pipeline_id": built["pipeline_id"]}).json()
    assert set(listed) == {"publishes", "edges"} and listed["edges"] == []
    assert [p["id"] for p in listed["publishes"]] == [built["id"], published["id"]]
    assert all(SEED_KEYS <= p.keys() for p in listed["publishes"])

    r = publishing_ops.call("add_edge_to_publish", {"pipeline_publish_id": published["id"],
                                                    "name": "ccfraud-observability-api", "tags": []})
    assert r.status_code == 200 and SEED_KEYS <= r.json().keys() and r.json()["status"] == "Published"
    bundle = EdgeBundle.decode(r.json()["helm"]["values"]["edgeBundle"])
    assert bundle.pipeline_url == published["pipeline_url"] and bundle.oci_registry == edge_registry.host
    assert edge_registry.password not in publishing_ops.log.read_text()


def test_a_publish_whose_source_is_gone_ends_in_error(publishing_ops, build_registry, make_record):
    record = make_record("edge-pipeline", registry=build_registry.host)   # names a pipeline never pushed
    built = publishing_ops.call("publish", record).json()
    seen, failed = statuses_until_done(publishing_ops, seed_publish(publishing_ops, built)["id"])
    assert failed["status"] == "Error" and seen[-1] == "Error" and "not found" in failed["error"]
    assert failed["pipeline_url"] is None and failed["helm"] is None


def test_a_restart_mid_publish_resumes_it(publishing_ops, build_registry, example_models, write_spec):
    built = ids_of(publishing_ops, packager_publish(publishing_ops, build_registry, write_spec(ONE)))
    build_registry.stop()   # every copy attempt fails now, and is retried
    publish_id = seed_publish(publishing_ops, built)["id"]
    wait_for("a failed attempt", lambda: (publishing_ops.call("get_publish_status", {"id": publish_id}).json()
                                          .get("error") or ""), timeout=60)
    publishing_ops.proc.kill()   # no clean shutdown: a claim may be left behind
    publishing_ops.proc.wait()
    build_registry.proc = start([registry_binary(), "serve", str(build_registry.root.parent / "config.yml")],
                                build_registry.log)
    wait_http(f"{build_registry.url}/v2/", proc=build_registry.proc, log=build_registry.log)
    publishing_ops.start()
    seen, published = statuses_until_done(publishing_ops, publish_id)
    assert published["status"] == "Published", published["error"]
    assert published["error"] is None and published["pipeline_url"].endswith(f":{built['pipeline_version']}")


def test_seed_bodies_are_checked(publishing_ops, make_record):
    built = publishing_ops.call("publish", make_record("edge-pipeline", models=[{"name": "ccfraud"}])).json()
    other = publishing_ops.call("publish", make_record("other-pipeline")).json()
    assert isinstance(built["pipeline_id"], int) and len(built["model_config_ids"]) == 1
    assert other["pipeline_id"] != built["pipeline_id"] and other["model_config_ids"] == []
    body = {"pipeline_id": built["pipeline_id"], "pipeline_version_id": built["pipeline_version_id"],
            "model_config_ids": built["model_config_ids"]}
    for bad, status, words in [
        ({**body, "pipeline_id": other["pipeline_id"]}, 400, "not of pipeline_id"),
        ({**body, "pipeline_version_id": 999}, 404, "no pipeline version with id 999"),
        ({**body, "model_config_ids": [999]}, 400, "not model configs"),
        ({**body, "pipeline_id": "one"}, 400, "pipeline_id: Input should be a valid integer"),
        ({"pipeline_version_id": 1}, 400, "pipeline_id: Field required"),
    ]:
        r = publishing_ops.call("publish", bad)
        assert r.status_code == status and words in r.json()["message"], (bad, r.text)
    r = publishing_ops.call("list_publishes_for_pipeline", {"pipeline_id": 999})
    assert r.status_code == 404 and "no pipeline with id 999" in r.json()["message"]
    r = publishing_ops.call("list_publishes_for_pipeline", {"pipeline_id": built["pipeline_id"]})
    assert [p["id"] for p in r.json()["publishes"]] == [built["id"]]


def test_without_an_edge_registry_the_seed_publish_is_refused(ops, make_record):
    with ops.client() as c:
        built = c.publish(make_record("edge-pipeline"))
    r = requests.post(f"{ops.url}/v1/api/pipelines/publish", headers={"Authorization": f"Bearer {ops.token}"},
                      json={"pipeline_id": built["pipeline_id"], "pipeline_version_id": built["pipeline_version_id"]},
                      timeout=30)
    assert r.status_code == 500 and "--edge-registry" in r.json()["message"]
