"""Signed publishes and provenance (issue 9): cosign's key-based format in a real registry and in the local
store, `packager keygen/sign/verify/inspect`, and every way a signature must fail."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from datetime import datetime

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.signing import flip_payload_byte, move_tag, replay_signature, restore_signature

from joey import mediatypes
from joey.layout import OCILayout
from joey.registry import Registry
from joey.signing import SignatureError, generate_keypair, load_public_key, load_signing_key, sign, verify
from packager.provenance import read_provenance
from packager.publish import publish

ONE = "name: edge-pipeline\nsteps:\n  - name: ccfraud-logreg\n    model: models/ccfraud-logreg.onnx\n" \
      "    tensor_fields: [tensor]\n"
OTHER = "name: other-pipeline\nsteps:\n  - name: ccfraud-mlp\n    model: models/ccfraud-mlp.onnx\n" \
        "    tensor_fields: [tensor]\n"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=120)


def assert_refused(done: subprocess.CompletedProcess, words: str) -> None:
    assert done.returncode == 5, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: signature check failed for "), done.stderr
    assert words in lines[0], lines[0]


@pytest.fixture()
def keys(tmp_path) -> dict:
    """Two key pairs: `mine` signs the publishes, `other` is somebody else's."""
    out = {}
    for name in ("mine", "other"):
        key, pub = generate_keypair(tmp_path / "keys" / name)
        out[name], out[f"{name}_pub"] = key, pub
    return out


def test_keygen_writes_a_p256_pair_that_only_the_owner_can_read(tmp_path):
    done = cli("keygen", "--out", str(tmp_path / "cosign"), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    key_path, pub_path = tmp_path / "cosign.key", tmp_path / "cosign.pub"
    assert out["private_key"] == str(key_path) and out["public_key"] == str(pub_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(key_path.read_bytes(), None)
    public = serialization.load_pem_public_key(pub_path.read_bytes())
    assert isinstance(private.curve, ec.SECP256R1)
    assert pub_path.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert private.public_key().public_numbers() == public.public_numbers()
    assert out["fingerprint"] == load_public_key(str(pub_path)).fingerprint
    again = cli("keygen", "--out", str(tmp_path / "cosign"))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert key_path.read_bytes() == private.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption())


def test_signed_publish_is_in_cosigns_format_and_verifies(example_models, write_spec, registry, keys):
    done = cli("publish", str(write_spec(ONE)), "--registry", f"{registry.host}/signed", "--plain-http",
               "--sign-key", str(keys["mine"]), "--json")
    assert done.returncode == 0, done.stderr
    rec = json.loads(done.stdout)
    url, digest = rec["pipeline_url"], rec["pipeline_digest"]
    repo = "signed/pipelines/edge-pipeline"

    # the signature as cosign lays it out: tag sha256-<hex>.sig in the same repository
    sig = requests.get(f"{registry.url}/v2/{repo}/manifests/sha256-{digest[7:]}.sig",
                       headers={"Accept": mediatypes.OCI_MANIFEST})
    assert sig.status_code == 200
    m = sig.json()
    assert m["mediaType"] == mediatypes.OCI_MANIFEST
    assert m["artifactType"] == "application/vnd.dev.cosign.artifact.sig.v1+json"
    assert m["subject"]["digest"] == digest
    [layer] = m["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    payload = requests.get(f"{registry.url}/v2/{repo}/blobs/{layer['digest']}").content
    assert "sha256:" + hashlib.sha256(payload).hexdigest() == layer["digest"]
    config = requests.get(f"{registry.url}/v2/{repo}/blobs/{m['config']['digest']}").content
    assert m["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert json.loads(config)["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    body = json.loads(payload)
    assert body["critical"] == {"identity": {"docker-reference": f"{registry.host}/{repo}"},
                                "image": {"docker-manifest-digest": digest},
                                "type": "cosign container image signature"}
    # cosign's check, done independently: ECDSA-SHA256 (DER, base64) over the payload bytes
    public = serialization.load_pem_public_key(keys["mine_pub"].read_bytes())
    public.verify(base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"]), payload,
                  ec.ECDSA(hashes.SHA256()))

    ok = cli("verify", url, "--key", str(keys["mine_pub"]), "--plain-http")
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].startswith(f"Verified OK: {url} {digest}")
    chart = f"{registry.host}/signed/charts/edge-pipeline:{rec['helm']['version']}"
    assert lines[1].startswith(f"Verified OK: {chart} sha256:")
    assert lines[2] == "provenance: signed, verifies with the key"

    shown = cli("inspect", url, "--plain-http", "--json")
    assert shown.returncode == 0, shown.stderr
    kinds = {r["kind"]: r for r in json.loads(shown.stdout)["referrers"]}
    assert set(kinds) == {"signature", "provenance", "sbom", "publish record"}
    assert kinds["signature"]["digest"] == "sha256:" + hashlib.sha256(sig.content).hexdigest()
    index = f"index sha256-{digest[7:]}"   # distribution 2.8 has no referrers API: the referrers tag lists them
    assert kinds["signature"]["found_via"] == [index, f"tag sha256-{digest[7:]}.sig"]
    assert kinds["provenance"]["found_via"] == [index, f"tag sha256-{digest[7:]}.att"]
    text = cli("inspect", url, "--plain-http").stdout
    assert f"signature   {kinds['signature']['digest']}" in text
    assert f"provenance  {kinds['provenance']['digest']}" in text


def test_a_flipped_byte_another_key_and_a_moved_tag_each_fail(example_models, write_spec, registry, keys):
    rec = publish(write_spec(ONE), registry=f"{registry.host}/tamper", plain_http=True, with_chart=False,
                  sign_key=keys["mine"])
    other = publish(write_spec(OTHER, "other.yaml"), registry=f"{registry.host}/tamper", plain_http=True,
                    with_chart=False)
    url, digest, tag = rec["pipeline_url"], rec["pipeline_digest"], rec["pipeline_version"]
    reg, repo = Registry(registry.host, plain_http=True), "tamper/pipelines/edge-pipeline"
    pub, other_pub = str(keys["mine_pub"]), str(keys["other_pub"])
    assert cli("verify", url, "--key", pub, "--plain-http").returncode == 0

    assert_refused(cli("verify", url, "--key", other_pub, "--plain-http"), "signed by another key")

    original = flip_payload_byte(reg, repo, digest)
    assert_refused(cli("verify", url, "--key", pub, "--plain-http"), "none of its 1 signature(s) verifies")
    restore_signature(reg, repo, digest, original)

    moved = move_tag(reg, repo, tag, "tamper/pipelines/other-pipeline", other["pipeline_version"])
    assert moved != digest
    assert_refused(cli("verify", url, "--key", pub, "--plain-http"), "no signature is attached")

    replay_signature(reg, repo, digest, moved)
    done = cli("verify", url, "--key", pub, "--plain-http")
    assert_refused(done, f"the signature is for {digest}, but the reference resolves to {moved} now")


def test_signing_again_replaces_this_keys_signature_and_keeps_others(example_models, write_spec, registry, keys):
    spec = write_spec(ONE)
    rec = publish(spec, registry=f"{registry.host}/twice", plain_http=True, with_chart=False)
    # republishing the same content with a key signs the existing publish
    again = publish(spec, registry=f"{registry.host}/twice", plain_http=True, with_chart=False,
                    sign_key=keys["other"])
    assert again == rec
    reg, repo, tag = Registry(registry.host, plain_http=True), "twice/pipelines/edge-pipeline", rec["pipeline_version"]
    who = f"{registry.host}/{repo}"
    mine, other = load_signing_key(keys["mine"]), load_signing_key(keys["other"])
    for key in (mine, mine):
        signed = sign(reg, repo, tag, key, docker_reference=who)
    raw, _, _ = reg.resolve(repo, signed.tag)
    assert len(json.loads(raw)["layers"]) == 2
    for key in (mine, other):
        v = verify(reg, repo, rec["pipeline_digest"], key.public, docker_reference=who, what=rec["pipeline_url"])
        assert v.key == key.public.fingerprint and v.identity == who
    with pytest.raises(SignatureError, match=f"the signature names '{who}', not 'elsewhere/x'"):
        verify(reg, repo, rec["pipeline_digest"], mine.public, docker_reference="elsewhere/x", what="x")


def _git(cwd, *args) -> str:
    return subprocess.run(["git", "-C", str(cwd), "-c", "user.name=joey", "-c", "user.email=joey@example.com",
                           *args], check=True, capture_output=True, text=True).stdout.strip()


def test_provenance_names_spec_models_revision_builder_and_time(example_models, write_spec, registry, keys,
                                                              tmp_path):
    spec = write_spec(ONE)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "pipeline.yaml", "models")
    _git(tmp_path, "commit", "-q", "-m", "pipeline")
    head = _git(tmp_path, "rev-parse", "HEAD")
    rec = publish(spec, registry=f"{registry.host}/prov", plain_http=True, with_chart=False, sign_key=keys["mine"])
    reg, repo = Registry(registry.host, plain_http=True), "prov/pipelines/edge-pipeline"

    prov = read_provenance(reg, repo, rec["pipeline_digest"], load_public_key(str(keys["mine_pub"])))
    assert prov.signed and prov.verified is True
    assert read_provenance(reg, repo, rec["pipeline_digest"], load_public_key(str(keys["other_pub"]))).verified is False
    st = prov.statement
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    assert st["subject"] == [{"name": f"{registry.host}/{repo}",
                              "digest": {"sha256": rec["pipeline_digest"].removeprefix("sha256:")}}]
    build = st["predicate"]["buildDefinition"]
    assert build["externalParameters"]["spec"]["digest"] == {"sha256": hashlib.sha256(spec.read_bytes()).hexdigest()}
    assert build["externalParameters"]["pipeline"] == {"name": "edge-pipeline", "version": rec["pipeline_version"]}
    deps = build["resolvedDependencies"]
    model = example_models["ccfraud-logreg"]
    assert {"name": "ccfraud-logreg", "uri": "file:models/ccfraud-logreg.onnx",
            "digest": {"sha256": hashlib.sha256(model.read_bytes()).hexdigest()}}.items() <= deps[1].items()
    assert deps[0]["digest"] == {"gitCommit": head}
    run = st["predicate"]["runDetails"]
    assert run["builder"] == {"id": "https://joey.dev/packager@0.1.0", "version": {"joey-packager": "0.1.0"}}
    started = datetime.fromisoformat(run["metadata"]["startedOn"])
    assert started <= datetime.fromisoformat(run["metadata"]["finishedOn"])
    assert started <= datetime.fromisoformat(rec["created_at"])


def test_local_store_unsigned_then_signed_then_moved(example_models, write_spec, keys, tmp_path, monkeypatch):
    monkeypatch.setenv("JOEY_BUILDER_ID", "https://ci.example.com/runner/7")
    rec = publish(write_spec(ONE))
    other = publish(write_spec(OTHER, "other.yaml"), with_chart=False)
    ref = f"edge-pipeline:{rec['pipeline_version']}"
    pub = str(keys["mine_pub"])
    assert_refused(cli("verify", ref, "--key", pub), "no signature is attached")

    layout = OCILayout(tmp_path / "store")
    prov = read_provenance(layout, "pipelines/edge-pipeline", rec["pipeline_digest"])
    assert not prov.signed and prov.verified is None
    assert prov.statement["predicate"]["runDetails"]["builder"]["id"] == "https://ci.example.com/runner/7"
    assert prov.statement["subject"][0]["name"] == "pipelines/edge-pipeline"

    signed = cli("sign", ref, "--key", str(keys["mine"]), "--json")
    assert signed.returncode == 0, signed.stderr
    names = [s["reference"] for s in json.loads(signed.stdout)["signed"]]
    model = json.loads(cli("inspect", ref, "--json").stdout)["pipeline"]["steps"][0]["model_version"]
    assert names == [f"pipelines/{ref}", f"charts/edge-pipeline:{rec['helm']['version']}",
                     f"models/ccfraud-logreg:{model}"]   # cosign's signatures, then model-signing's
    ok = cli("verify", ref, "--key", pub)
    assert ok.returncode == 0 and ok.stdout.count("Verified OK") == 2, ok.stdout + ok.stderr
    assert "provenance: unsigned statement" in ok.stdout
    shown = cli("inspect", ref)
    assert "signature " in shown.stdout and "provenance " in shown.stdout

    digest = rec["pipeline_digest"]
    original = flip_payload_byte(layout, "pipelines/edge-pipeline", digest)
    assert_refused(cli("verify", ref, "--key", pub), "none of its 1 signature(s) verifies")
    restore_signature(layout, "pipelines/edge-pipeline", digest, original)
    payload_file = layout.blob_path(json.loads(original)["layers"][0]["digest"])
    intact = payload_file.read_bytes()
    payload_file.write_bytes(intact.replace(b"edge-pipeline", b"edge-pipelinf"))   # altered where it is stored
    assert_refused(cli("verify", ref, "--key", pub), "its 1 signature(s) could not be read intact")
    payload_file.write_bytes(intact)
    assert_refused(cli("verify", ref, "--key", str(keys["other_pub"])), "signed by another key")
    moved = move_tag(layout, "pipelines/edge-pipeline", rec["pipeline_version"], "pipelines/other-pipeline",
                     other["pipeline_version"])
    replay_signature(layout, "pipelines/edge-pipeline", digest, moved)
    assert_refused(cli("verify", ref, "--key", pub), "the tag moved after signing")
    listed = cli("list").stdout
    assert "sha256-" not in listed and ref in listed


def test_a_bad_key_fails_before_anything_is_pushed(example_models, write_spec, tmp_path, registry):
    (tmp_path / "not-a-key.pem").write_text("hello")
    done = cli("publish", str(write_spec(ONE)), "--registry", f"{registry.host}/badkey", "--plain-http",
               "--sign-key", str(tmp_path / "not-a-key.pem"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: --sign-key: ") and "not an unencrypted PEM private key" in done.stderr
    assert requests.get(f"{registry.url}/v2/badkey/pipelines/edge-pipeline/tags/list").status_code == 404
