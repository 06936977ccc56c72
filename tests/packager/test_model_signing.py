"""OpenSSF model signing: a signed publish attaches a model-signing signature to each model's ModelPack
manifest, which the `model_signing` package verifies with the public key over the pulled file; the engine
accepts a pipeline whose only signatures are these."""
from __future__ import annotations

import json

import pytest
import requests
from model_signing import verifying
from modelpack_client import ModelPackClient

from engine import fetch
from engine.settings import from_env
from joey import mediatypes
from joey.names import parse
from joey.registry import Registry
from joey.signing import SignatureError, generate_keypair, load_signing_key
from packager.publish import publish
from packager.signing import sign_models

SPEC = "name: edge-pipeline\nsteps:\n  - name: ccfraud-logreg\n    model: models/ccfraud-logreg.onnx\n" \
       "    tensor_fields: [tensor]\n"


@pytest.fixture()
def keys(tmp_path) -> dict:
    return {name: generate_keypair(tmp_path / "keys" / name) for name in ("mine", "other")}


def _model(registry, ns: str, rec: dict, tmp_path):
    """(the pulled model file, the model-signing bundle attached to its manifest), both read over plain HTTP."""
    reg = Registry(registry.host, plain_http=True)
    raw, _, _ = reg.resolve(parse(rec["pipeline_url"]).repository, rec["pipeline_version"])
    config = json.loads(raw)["config"]["digest"]
    step = requests.get(f"{registry.url}/v2/{ns}/pipelines/edge-pipeline/blobs/{config}").json()["steps"][0]
    pulled = ModelPackClient(insecure=True).pull(f"{registry.host}/{ns}/models/ccfraud-logreg:{step['model_version']}",
                                                 tmp_path / "pulled")
    repo = f"{ns}/models/ccfraud-logreg"
    index = requests.get(f"{registry.url}/v2/{repo}/manifests/sha256-{step['modelpack_digest'][7:]}",
                         headers={"Accept": mediatypes.OCI_INDEX}).json()
    [entry] = [e for e in index["manifests"] if e["artifactType"] == mediatypes.SIGSTORE_BUNDLE]
    manifest = requests.get(f"{registry.url}/v2/{repo}/manifests/{entry['digest']}",
                            headers={"Accept": mediatypes.OCI_MANIFEST}).json()
    bundle = tmp_path / "model.sig"
    bundle.write_bytes(requests.get(f"{registry.url}/v2/{repo}/blobs/{manifest['layers'][0]['digest']}").content)
    return pulled.files[0], bundle


def test_model_signing_verifies_a_published_models_signature(example_models, write_spec, registry, keys, tmp_path):
    rec = publish(write_spec(SPEC), registry=f"{registry.host}/msig", plain_http=True, with_chart=False,
                  sign_key=keys["mine"][0])
    model, bundle = _model(registry, "msig", rec, tmp_path)
    verifying.Config().use_elliptic_key_verifier(public_key=keys["mine"][1]).verify(model, bundle)
    with pytest.raises(ValueError):
        verifying.Config().use_elliptic_key_verifier(public_key=keys["other"][1]).verify(model, bundle)
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="Signature mismatch"):
        verifying.Config().use_elliptic_key_verifier(public_key=keys["mine"][1]).verify(model, bundle)


def test_the_engine_accepts_model_signatures_when_no_cosign_signature_is_attached(
        example_models, write_spec, registry, keys, tmp_path):
    rec = publish(write_spec(SPEC), registry=f"{registry.host}/msig-engine", plain_http=True, with_chart=False)
    ref = parse(rec["pipeline_url"])
    [signed] = sign_models(Registry(registry.host, plain_http=True), ref, load_signing_key(keys["mine"][0]), {})
    assert signed.reference.startswith(f"{registry.host}/msig-engine/models/ccfraud-logreg:")

    def settings(key: str):
        return from_env({"PIPELINE_URL": rec["pipeline_url"], "JOEY_PLAIN_HTTP": "true",
                         "JOEY_VERIFY_KEY": str(keys[key][1])}, persist_dir=tmp_path / key)

    fetched = fetch.pull(settings("mine"))
    assert fetched.verified_key == load_signing_key(keys["mine"][0]).public.fingerprint
    assert (fetched.directory / "ccfraud-logreg.onnx").read_bytes() == example_models["ccfraud-logreg"].read_bytes()
    with pytest.raises(SignatureError, match="no signature is attached"):
        fetch.pull(settings("other"))
