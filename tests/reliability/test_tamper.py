"""Scenario 10 — a tampering proxy between the engine/packager and a real registry: a flipped byte, a blob one
byte longer or shorter, another manifest served for a digest, an altered config. Pass: the pull is refused
(DigestMismatch / SizeMismatch, exit code 5) before anything is written — the output directory stays empty,
the engine's cache gains nothing and `current` is unchanged — and an engine already serving keeps serving its
pipeline, with the same answers."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.engine import features, publish_spec, start_engine, tensor_table
from support.procs import free_port
from support.proxy import Forward, Proxy, Request, Response
from support.specs import one_step

from engine.fetch import PipelineCache, fetch
from engine.settings import from_env
from joey.descriptor import Manifest
from joey.errors import DigestMismatch, SizeMismatch
from joey.registry import Registry
from joey.transfer import pull_to_dir

PACKAGER = Path(sys.executable).with_name("packager")

V2_SPEC = one_step(model="ccfraud-mlp")


@pytest.fixture(scope="module")
def v2(pipeline_dir, registry) -> dict:
    """A second version of the pipeline (another model), to be fetched through the proxy."""
    (pipeline_dir / "v2.yaml").write_text(V2_SPEC)
    return publish_spec(pipeline_dir / "v2.yaml", registry)


def artifact(registry, record: dict) -> tuple[str, str, Manifest]:
    """(repository, tag, manifest) of a published pipeline."""
    repo, _, tag = record["pipeline_url"].split("/", 1)[1].partition(":")
    raw, _, _ = Registry(registry.host, plain_http=True).resolve(repo, tag)
    return repo, tag, Manifest.parse(raw, record["pipeline_url"])


def tamper_blob(digest: str, change):
    def alter(req: Request, resp: Response) -> Response:
        if req.method == "GET" and req.path.endswith(f"/blobs/{digest}") and resp.status == 200:
            return Response(resp.status, resp.headers, change(resp.body))
        return resp
    return lambda req: Forward(alter=alter)


def swap_manifest(digest: str, other_raw: bytes):
    """Serve `other_raw` whenever the manifest is asked for by its digest."""
    def alter(req: Request, resp: Response) -> Response:
        if req.path.endswith(f"/manifests/{digest}") and resp.status == 200:
            return Response(200, resp.headers, other_raw)
        return resp
    return lambda req: Forward(alter=alter)


def flip(body: bytes) -> bytes:
    mid = len(body) // 2
    return body[:mid] + bytes([body[mid] ^ 0x01]) + body[mid + 1:]


def attacks(registry, v1: dict, v2: dict) -> dict:
    _, _, m1 = artifact(registry, v1)
    _, _, m2 = artifact(registry, v2)
    model = m2.layers[0].digest
    return {
        "flipped byte": (tamper_blob(model, flip), DigestMismatch),
        "one byte longer": (tamper_blob(model, lambda b: b + b"\0"), SizeMismatch),
        "one byte shorter": (tamper_blob(model, lambda b: b[:-1]), SizeMismatch),
        "altered config": (tamper_blob(m2.config.digest, lambda b: b.replace(b"ccfraud-mlp", b"ccfraud-mlq")),
                           DigestMismatch),
        "another manifest for the digest": (swap_manifest(m2.digest, m1.raw), DigestMismatch),
    }


ATTACKS = ["flipped byte", "one byte longer", "one byte shorter", "altered config",
           "another manifest for the digest"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_packager_pull_is_refused_and_writes_nothing(registry, published, v2, tmp_path, attack):
    decide, error = attacks(registry, published, v2)[attack]
    repo, tag, manifest = artifact(registry, v2)
    out = tmp_path / "out"
    with Proxy(registry.host, decide) as proxy:
        with pytest.raises(error):
            # by digest, as a pinned PIPELINE_URL or the engine's second resolve asks for it
            pull_to_dir(Registry(proxy.host, plain_http=True), repo, manifest.digest, out)
        assert proxy.requests("/v2/"), "the pull did not go through the proxy"
    assert not out.exists() or not any(out.rglob("*"))


def test_packager_cli_pull_exit_code_5(registry, published, v2, tmp_path):
    decide, _ = attacks(registry, published, v2)["flipped byte"]
    repo, tag, _ = artifact(registry, v2)
    with Proxy(registry.host, decide) as proxy:
        done = subprocess.run([str(PACKAGER), "pull", f"{proxy.host}/{repo}:{tag}", "--out", str(tmp_path / "out"),
                               "--plain-http"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 5 and "digest mismatch" in done.stderr, done.stderr
    assert not any((tmp_path / "out").rglob("*"))


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_serving_engine_keeps_its_pipeline_when_a_fetch_is_tampered(registry, published, v2, tmp_path, attack):
    """An engine serves v1; v2 is then fetched into the same /persist through the tampering proxy (what an
    update's new engine process does first): refused, nothing of v2 in the cache, `current` still v1, and
    the serving engine answers as before."""
    persist = tmp_path / "persist"
    engine = start_engine(published["pipeline_url"], persist)
    try:
        x = features(4, seed=8)
        before = engine.infer(tensor_table(x)).json()
        cache = PipelineCache(persist / "pipelines")
        current, listing = cache.current(), sorted(p.name for p in cache.root.iterdir())
        decide, error = attacks(registry, published, v2)[attack]
        with Proxy(registry.host, decide) as proxy:
            url = v2["pipeline_url"].replace(registry.host, proxy.host)
            if attack == "another manifest for the digest":   # the engine reads the manifest once, by what
                url = f"{url.rsplit(':', 1)[0]}@{artifact(registry, v2)[2].digest}"   # the URL names: pin it
            with pytest.raises(error):
                fetch(from_env({"PIPELINE_URL": url, "JOEY_PLAIN_HTTP": "true"}, persist_dir=persist))
        assert cache.current() == current
        assert sorted(p.name for p in cache.root.iterdir()) == listing
        ready = engine.get("/ready").json()
        assert ready["digest"] == published["pipeline_digest"]
        assert [r["out"] for r in engine.infer(tensor_table(x)).json()] == [r["out"] for r in before]
    finally:
        engine.stop()


def test_an_engine_started_through_the_tampering_proxy_exits_5_and_caches_nothing(registry, published, v2,
                                                                                   tmp_path):
    persist = tmp_path / "persist"
    decide, _ = attacks(registry, published, v2)["flipped byte"]
    with Proxy(registry.host, decide) as proxy:
        url = v2["pipeline_url"].replace(registry.host, proxy.host)
        done = subprocess.run([sys.executable, "-m", "engine", "--host", "127.0.0.1", "--port", str(free_port())],
                              env={"PIPELINE_URL": url, "JOEY_PLAIN_HTTP": "true", "JOEY_PERSIST_DIR": str(persist),
                                   "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == DigestMismatch.exit_code == 5, done.stdout + done.stderr
    assert "digest mismatch" in done.stdout
    cache = PipelineCache(persist / "pipelines")
    assert cache.current() is None
    assert not cache.root.exists() or not [p for p in cache.root.iterdir() if p.is_dir()]


def test_the_untampered_path_works(registry, v2, tmp_path):
    """The control: the same proxy, passing everything through, delivers v2 whole."""
    with Proxy(registry.host) as proxy:
        url = v2["pipeline_url"].replace(registry.host, proxy.host)
        fetched = fetch(from_env({"PIPELINE_URL": url, "JOEY_PLAIN_HTTP": "true"}, persist_dir=tmp_path / "p"))
    assert fetched.digest == v2["pipeline_digest"] and not fetched.from_cache
    assert json.loads((fetched.directory / "config.json").read_bytes())["steps"][0]["name"] == "ccfraud-mlp"
