"""The policy pack (infra/policy) as `pulumi preview --policy-pack` runs it: a real analyzer process, asked
over Pulumi's analyzer gRPC protocol about the resources the program declares."""
from __future__ import annotations

import copy
import sys
import time

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from support.infra import ALL_RUNS, ROOT, Seen, run
from support.procs import start, stop

PACK = ROOT / "infra" / "policy"


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory):
    log = tmp_path_factory.mktemp("policy-pack") / "pack.log"
    proc = start([sys.executable, str(PACK / "__main__.py")], log, cwd=PACK)
    try:
        # Like the engine, read the port the pack prints on its first line once it serves.
        deadline = time.monotonic() + 60
        while "\n" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        port = int(log.read_text().split("\n", 1)[0])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        stop(proc)


def resource(r: Seen, stack: str = "test") -> analyzer_pb2.AnalyzerResource:
    props = struct_pb2.Struct()
    json_format.ParseDict(r.wire, props)   # with Pulumi's secret markers, as the engine sends them
    return analyzer_pb2.AnalyzerResource(type=r.type, properties=props, name=r.name,
                                         urn=f"urn:pulumi:{stack}::joey::{r.type}::{r.name}")


def analyze(stub, resources: list[Seen]) -> list[analyzer_pb2.AnalyzeDiagnostic]:
    found = []
    for r in resources:
        res = resource(r)
        found += stub.Analyze(analyzer_pb2.AnalyzeRequest(type=res.type, properties=res.properties, urn=res.urn,
                                                          name=res.name)).diagnostics
    found += stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[resource(r) for r in resources])).diagnostics
    return list(found)


def test_the_pack_names_its_policies(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "joey"
    assert {p.name for p in info.policies} == {
        "pod-security", "images-pinned", "secret-env", "persist-for-bundle", "registry-auth", "release-values",
        "docker-engine", "edge-ingress", "unique-edge-names", "ops-replicas"}
    assert all(p.enforcementLevel == analyzer_pb2.MANDATORY for p in info.policies)


@pytest.mark.parametrize("name", ALL_RUNS)
def test_every_stack_passes_the_pack(analyzer, name):
    diagnostics = analyze(analyzer, [r for r in run(name).resources if r.type != "pulumi:pulumi:Stack"])
    assert [d.message for d in diagnostics] == []


def edited(r: Seen, change) -> Seen:
    wire = copy.deepcopy(r.wire)
    change(wire)
    return Seen(r.type, r.name, r.parent, wire)


def test_the_pack_blocks_bad_resources(analyzer):
    rec = run("dev")

    def bad_registry(wire):
        pod = wire["spec"]["template"]["spec"]
        pod["containers"][0]["securityContext"]["privileged"] = True
        pod["containers"][0]["env"].append({"name": "OCI_PASSWORD", "value": "hunter2"})
        pod["containers"][0]["image"] = "docker.io/library/registry:2.8.3"

    def bad_release(wire):
        wire["values"]["edgeBundle"] = "ZXhwb3J0"

    resources = [edited(rec.named("registry-deployment"), bad_registry),
                 edited(rec.named("sim-edge-a-release"), bad_release),
                 edited(rec.named("sim-edge-b-release"), lambda w: w.update(name="sim-edge-a")),
                 edited(rec.named("ops-deployment"), lambda w: w["spec"].update(replicas=3)),
                 rec.named("ops-service")]
    diagnostics = analyze(analyzer, resources)
    assert {d.policyName for d in diagnostics} == {"pod-security", "secret-env", "images-pinned", "release-values",
                                                  "unique-edge-names", "edge-ingress", "ops-replicas"}
    assert all(d.enforcementLevel == analyzer_pb2.MANDATORY for d in diagnostics)
    assert not [d for d in diagnostics if "hunter2" in d.message or "ZXhwb3J0" in d.message]
