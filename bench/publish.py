"""Publish/pull benchmarks against their floors, on a loopback registry, in one run.

- publish: `packager.publish.publish` of a spec whose one model is an N MiB ONNX file (no chart), to a fresh
  repository each time, with an empty inspection cache (a first publish: sha256 + onnx checker + upload);
  publish_warm: the same with the model's inspection cached (a new repository, the model unchanged);
- floor: sha256 of the file + one monolithic upload (POST + streamed PUT) with plain `requests`;
- peer: oras-py's own `push` of the same file;
- republish: the same publish again (unchanged);
- pull: `packager pull` (verified, written to disk) vs floor GET + sha256; beside it the same GET + sha256
  also written to a plain file (no fsync), to show what the disk itself costs.

Usage: python -m bench.publish [--sizes 16,256,1024] [--repeat 3]
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import requests
from onnx import TensorProto, helper, numpy_helper

from bench.common import start_registry, summary, timed, write_result
from joey.names import parse
from joey.registry import Registry
from joey.transfer import pull_to_dir
from packager.publish import publish

# A registry publish first copies its engine image into the registry, once per registry: not what these
# figures compare (the pipeline's own upload against one PUT), and the bench has no engine image to copy.
NO_ENGINE = {"with_engine_image": False}


def big_model(path: Path, mib: int) -> None:
    """A valid ONNX file of about `mib` MiB: an Identity graph carrying one large initializer."""
    w = np.random.default_rng(mib).standard_normal(mib * 2**20 // 4, dtype=np.float32).reshape(-1, 256)
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "big",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
                          [numpy_helper.from_array(w, "W")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def floor_push(host: str, repo: str, path: Path) -> None:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    r = requests.post(f"http://{host}/v2/{repo}/blobs/uploads/")
    loc = r.headers["Location"]
    loc = loc if loc.startswith("http") else f"http://{host}{loc}"
    with open(path, "rb") as f:
        r = requests.put(f"{loc}&digest={digest}", data=f,
                         headers={"Content-Type": "application/octet-stream",
                                  "Content-Length": str(path.stat().st_size)})
    assert r.status_code == 201, r.text


def floor_pull(host: str, repo: str, digest: str, out: Path | None = None) -> None:
    h = hashlib.sha256()
    with requests.get(f"http://{host}/v2/{repo}/blobs/{digest}", stream=True) as r, \
            (open(out, "wb") if out else contextlib.nullcontext()) as f:
        for chunk in r.iter_content(4 << 20):
            h.update(chunk)
            if f:
                f.write(chunk)
    assert "sha256:" + h.hexdigest() == digest


def peer_push(host: str, repo: str, path: Path) -> None:
    import oras.client

    client = oras.client.OrasClient(hostname=host, insecure=True)
    client.push(target=f"{host}/{repo}:v1", files=[str(path)], disable_path_validation=True)


def _fresh_cache(parent: Path) -> None:
    """A new, empty inspection cache: the next publish inspects its model as a first publish would."""
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cache-", dir=parent)


def _interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Time each function `repeat` times, round-robin, so that a change of machine load hits all alike."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            out[k] += timed(fn, 1)
    return out


def run(sizes: list[int], repeat: int) -> dict:
    results: dict = {"benchmarks": []}
    cache = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory(prefix="joey-bench-") as tmp:
        tmp = Path(tmp)
        reg = start_registry(tmp / "registry")
        try:
            for mib in sizes:
                model = tmp / "models" / "big.onnx"
                model.parent.mkdir(exist_ok=True)
                big_model(model, mib)
                size = model.stat().st_size
                spec = tmp / "spec.yaml"
                spec.write_text("name: big\nsteps:\n  - name: big\n    model: models/big.onnx\n")
                out = tmp / "out"

                def fresh() -> str:
                    return f"{reg.host}/b{uuid.uuid4().hex[:10]}"

                def first_publish() -> None:   # a model never inspected, to a repository that has nothing
                    _fresh_cache(tmp)
                    publish(spec, registry=fresh(), plain_http=True, with_chart=False, **NO_ENGINE)

                push = _interleaved({
                    "publish": first_publish,
                    "publish_warm": lambda: publish(spec, registry=fresh(), plain_http=True, with_chart=False, **NO_ENGINE),
                    "floor_push": lambda: floor_push(reg.host, f"f{uuid.uuid4().hex[:10]}/x", model),
                    "peer_oras_push": lambda: peer_push(reg.host, f"o{uuid.uuid4().hex[:10]}/x", model),
                }, repeat)
                target = fresh()
                rec = publish(spec, registry=target, plain_http=True, with_chart=False, **NO_ENGINE)
                again = timed(lambda: publish(spec, registry=target, plain_http=True, with_chart=False, **NO_ENGINE), repeat)
                ref = parse(rec["pipeline_url"])
                client = Registry(reg.host, plain_http=True)
                layer = f"sha256:{hashlib.sha256(model.read_bytes()).hexdigest()}"

                def pull() -> None:
                    shutil.rmtree(out, ignore_errors=True)
                    pull_to_dir(client, ref.repository, ref.tag, out)

                pulls = _interleaved({
                    "pull": pull,
                    "floor_pull": lambda: floor_pull(reg.host, ref.repository, layer),
                    "floor_pull_to_disk": lambda: floor_pull(reg.host, ref.repository, layer, tmp / "floor.bin"),
                }, repeat)
                row = {"size_MiB": mib, "bytes": size, "republish": summary(again),
                       **{k: summary(v, bytes_=size) for k, v in {**push, **pulls}.items()}}
                row["publish_vs_floor"] = row["publish"]["p50_s"] / row["floor_push"]["p50_s"]
                row["publish_warm_vs_floor"] = row["publish_warm"]["p50_s"] / row["floor_push"]["p50_s"]
                row["publish_vs_peer"] = row["publish"]["p50_s"] / row["peer_oras_push"]["p50_s"]
                row["republish_vs_publish"] = row["republish"]["p50_s"] / row["publish"]["p50_s"]
                row["pull_vs_floor"] = row["pull"]["p50_s"] / row["floor_pull"]["p50_s"]
                row["pull_vs_floor_to_disk"] = row["pull"]["p50_s"] / row["floor_pull_to_disk"]["p50_s"]
                results["benchmarks"].append(row)
                shutil.rmtree(out, ignore_errors=True)
                print(f"{mib:5d} MiB  publish {row['publish']['p50_s']:.3f}s (warm {row['publish_warm']['p50_s']:.3f}s)"
                      f"  floor {row['floor_push']['p50_s']:.3f}s ({row['publish_vs_floor']:.2f}x)"
                      f"  oras {row['peer_oras_push']['p50_s']:.3f}s"
                      f"  republish {row['republish']['p50_s']:.3f}s ({row['republish_vs_publish']:.3f}x)"
                      f"  pull {row['pull']['p50_s']:.3f}s vs {row['floor_pull']['p50_s']:.3f}s"
                      f" ({row['pull_vs_floor']:.2f}x; {row['pull_vs_floor_to_disk']:.2f}x with the write)", flush=True)
        finally:
            reg.stop()
            if cache is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = cache
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="16,256", help="model sizes in MiB, comma-separated (1024 for 1 GiB)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    res = run([int(s) for s in a.sizes.split(",")], a.repeat)
    print(write_result("publish", {"command": f"python -m bench.publish --sizes {a.sizes} --repeat {a.repeat}",
                                   **res}))


if __name__ == "__main__":
    main()
