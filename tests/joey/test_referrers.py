"""OCI 1.1 referrers on a registry without the referrers API (Debian's distribution 2.8): the `sha256-<hex>`
index tag lists every referrer for any OCI tool, and two publishers attaching at once both end up listed."""
from __future__ import annotations

import io
import threading

import requests

from joey import mediatypes
from joey import referrers as refs
from joey.descriptor import Descriptor, manifest_bytes
from joey.registry import Registry
from joey.signing import generate_keypair
from packager.publish import publish

SPEC = "name: edge-pipeline\nsteps:\n  - name: ccfraud-logreg\n    model: models/ccfraud-logreg.onnx\n" \
       "    tensor_fields: [tensor]\n"


def test_a_signed_publish_lists_signature_provenance_sbom_and_record_in_the_index_tag(
        example_models, write_spec, registry, tmp_path):
    key, _ = generate_keypair(tmp_path / "cosign")
    rec = publish(write_spec(SPEC), registry=f"{registry.host}/refs", plain_http=True, with_chart=False,
                  sign_key=key)
    digest, repo = rec["pipeline_digest"], "refs/pipelines/edge-pipeline"
    assert requests.get(f"{registry.url}/v2/{repo}/referrers/{digest}").status_code == 404   # no API here

    r = requests.get(f"{registry.url}/v2/{repo}/manifests/sha256-{digest[7:]}",
                     headers={"Accept": mediatypes.OCI_INDEX})
    assert r.status_code == 200 and r.headers["Content-Type"] == mediatypes.OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == mediatypes.OCI_INDEX
    listed = {e["artifactType"]: e for e in index["manifests"]}
    assert set(listed) == {"application/vnd.dev.cosign.artifact.sig.v1+json",
                           "application/vnd.dev.cosign.artifact.att.v1+json",
                           "application/vnd.cyclonedx+json", "application/vnd.joey.publish.v1+json"}
    for entry in index["manifests"]:   # each entry is a manifest of the repository whose subject is the pipeline
        m = requests.get(f"{registry.url}/v2/{repo}/manifests/{entry['digest']}",
                         headers={"Accept": mediatypes.OCI_MANIFEST})
        assert m.status_code == 200 and len(m.content) == entry["size"]
        assert m.json()["subject"]["digest"] == digest and m.json()["artifactType"] == entry["artifactType"]
    # the cosign tags stay, for cosign users
    assert requests.get(f"{registry.url}/v2/{repo}/manifests/sha256-{digest[7:]}.sig",
                        headers={"Accept": mediatypes.OCI_MANIFEST}).status_code == 200


def _subject(target: Registry, repo: str) -> Descriptor:
    empty = Descriptor.for_bytes(mediatypes.OCI_EMPTY, b"{}")
    target.write_blob(repo, empty, io.BytesIO(b"{}"))
    raw = manifest_bytes(empty, [], {"purpose": "subject"})
    return Descriptor(mediatypes.OCI_MANIFEST, target.write_manifest(repo, "subject", raw, mediatypes.OCI_MANIFEST),
                      len(raw))


def test_two_concurrent_publishers_attaching_to_one_subject_both_end_up_listed(registry):
    repo = "race/pipelines/subject"
    subject = _subject(Registry(registry.host, plain_http=True), repo)
    attached: dict[str, list[str]] = {}
    start = threading.Barrier(2)

    def publisher(name: str) -> None:
        target = Registry(registry.host, plain_http=True)   # each its own client, as two processes would be
        start.wait()
        for i in range(4):
            data = f"{name} {i}".encode()
            layer = Descriptor.for_bytes("text/plain", data)
            attached.setdefault(name, []).append(refs.attach_artifact(
                target, repo, subject, f"application/vnd.example.{name}.{i}", [(layer, data)],
                annotations={"publisher": name}))

    threads = [threading.Thread(target=publisher, args=(n,)) for n in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, entries = refs.read_index(Registry(registry.host, plain_http=True), repo, subject.digest)
    assert sorted(e["digest"] for e in entries) == sorted(attached["alice"] + attached["bob"])
    found = refs.find(Registry(registry.host, plain_http=True), repo, subject.digest)
    assert {r.annotations["publisher"] for r in found} == {"alice", "bob"} and len(found) == 8


def test_export_and_import_carry_the_referrers_along(example_models, write_spec, registry, tmp_path):
    from packager.airgap import export_publish, import_bundle

    key, _ = generate_keypair(tmp_path / "cosign")
    rec = publish(write_spec(SPEC), registry=f"{registry.host}/from", plain_http=True, with_chart=False,
                  sign_key=key)
    bundle = export_publish(rec["pipeline_url"], tmp_path / "bundle.tar", plain_http=True).path
    import_bundle(bundle, f"{registry.host}/to", plain_http=True)
    target, digest = Registry(registry.host, plain_http=True), rec["pipeline_digest"]
    kinds = {r.to_json()["kind"] for r in refs.find(target, "to/pipelines/edge-pipeline", digest)}
    assert kinds == {"signature", "provenance", "sbom", "publish record"}
    [model] = [t for t in target.tags("to/models/ccfraud-logreg") if not t.startswith("sha256-")]
    _, _, model_digest = target.resolve("to/models/ccfraud-logreg", model)
    assert [r.to_json()["kind"] for r in refs.find(target, "to/models/ccfraud-logreg", model_digest)] == \
        ["model signature"]
