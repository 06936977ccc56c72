"""Verification at the edge (issue 9): real engines with JOEY_VERIFY_KEY against a real registry. Nothing is
loaded before the signature checks out; a refused publish leaves the last verified pipeline serving, or the
engine not ready (and retrying) when it has none."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
from support.engine import publish_spec, start_engine, tensor_table
from support.procs import free_port, wait_http
from support.signing import flip_payload_byte, move_tag, replay_signature, restore_signature

from joey.names import parse
from joey.registry import Registry
from joey.signing import generate_keypair, load_signing_key
from packager.publish import publish
from packager.signing import sign_publish


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("mine", "other"):
        out[name], out[f"{name}_pub"] = generate_keypair(root / name)
    return out


def wait_for_log(eng, words: str, timeout: float = 60) -> None:
    """Until the engine's log says `words` (the engine keeps retrying meanwhile)."""
    deadline = time.monotonic() + timeout
    while words not in eng.log_text():
        assert eng.proc.poll() is None, eng.log_text()
        assert time.monotonic() < deadline, f"{words!r} not logged:\n{eng.log_text()}"
        time.sleep(0.1)


def test_an_unsigned_pipeline_is_not_loaded_until_it_is_signed(pipeline_dir, registry, keys, tmp_path, x_small):
    record = publish(pipeline_dir / "one.yaml", registry=f"{registry.host}/edge-unsigned", plain_http=True,
                     with_chart=False)
    eng = start_engine(record["pipeline_url"], tmp_path / "persist", wait_ready=False,
                       JOEY_VERIFY_KEY=keys["mine_pub"].read_text())
    try:
        wait_for_log(eng, "retrying in")
        r = eng.get("/ready")
        assert r.status_code == 503
        assert "signature check failed" in r.json()["error"] and "no signature is attached" in r.json()["error"]
        assert eng.get("/models").status_code == 503
        assert "Fetching model layers" not in eng.log_text()   # refused before anything was pulled

        ref = parse(record["pipeline_url"])
        sign_publish(Registry(ref.host, plain_http=True), ref, load_signing_key(keys["mine"]))
        wait_http(eng.url + "/ready", ok=(200,), timeout=90, proc=eng.proc, log=eng.log)
        assert len(eng.infer(tensor_table(x_small)).json()) == len(x_small)
    finally:
        assert eng.stop() == 0
    text = eng.log_text()
    assert f"ERROR: Refused: signature check failed for {record['pipeline_url']}" in text
    assert f"Verified the signature of {record['pipeline_url']} ({record['pipeline_digest']})" in text


def test_a_tampered_publish_leaves_the_last_verified_pipeline_serving(pipeline_dir, registry, keys, tmp_path,
                                                                     x_small):
    ns = f"{registry.host}/edge-signed"
    record = publish(pipeline_dir / "one.yaml", registry=ns, plain_http=True, with_chart=False,
                     sign_key=keys["mine"])
    other = publish_spec(pipeline_dir / "two.yaml", registry)
    url, digest, version = record["pipeline_url"], record["pipeline_digest"], record["pipeline_version"]
    reg, repo = Registry(registry.host, plain_http=True), "edge-signed/pipelines/edge-pipeline"
    persist = tmp_path / "persist"
    mine = {"JOEY_VERIFY_KEY": str(keys["mine_pub"])}   # as a path this time

    eng = start_engine(url, persist, **mine)
    expected = eng.infer(tensor_table(x_small)).json()
    eng.stop()

    def restart_serves_the_cache(reason: str) -> None:
        again = start_engine(url, persist, **mine)
        try:
            assert again.get("/pipelines").json()["pipelines"][0]["version"] == version
            assert [r["out"] for r in again.infer(tensor_table(x_small)).json()] == [r["out"] for r in expected]
        finally:
            again.stop()
        text = again.log_text()
        assert f"ERROR: Refused: signature check failed for {url}" in text and reason in text, text
        assert f"Keeping the last good pipeline: serving the cached pipeline edge-pipeline version {version} " \
               f"({digest})" in text, text

    original = flip_payload_byte(reg, repo, digest)
    restart_serves_the_cache("none of its 1 signature(s) verifies with the key")
    restore_signature(reg, repo, digest, original)

    moved = move_tag(reg, repo, version, "joey/pipelines/chained", other["pipeline_version"])
    sign_publish(reg, parse(url), load_signing_key(keys["other"]))   # the moved tag, signed by someone else
    restart_serves_the_cache("signed by another key")

    replay_signature(reg, repo, digest, moved)   # and now with the signature of what the tag named before
    restart_serves_the_cache(f"the signature is for {digest}, but the reference resolves to {moved} now")

    # a key that never verified the cache: the cache is not served either, the engine stays not ready
    stranger = start_engine(url, persist, wait_ready=False, JOEY_VERIFY_KEY=str(keys["other_pub"]))
    try:
        wait_for_log(stranger, "retrying in")
        assert stranger.get("/ready").status_code == 503
    finally:
        stranger.stop()
    assert f"The cached pipeline {digest} was not verified with JOEY_VERIFY_KEY" in stranger.log_text()


def test_a_bad_verify_key_is_a_setting_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "engine", "--host", "127.0.0.1", "--port", str(free_port())],
                          env={"PIPELINE_URL": "127.0.0.1:5000/joey/pipelines/edge-pipeline:1",
                               "JOEY_PERSIST_DIR": str(tmp_path / "persist"), "PATH": "/usr/bin:/bin",
                               "JOEY_VERIFY_KEY": "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("joey-engine: JOEY_VERIFY_KEY: the PEM text is not a PEM "
                                                   "public key"), done.stderr
