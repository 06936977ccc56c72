"""Publish/pull benchmarks against their floors, on a loopback registry, in one run.

- publish: `packager.publish.publish` of a spec whose one model is an N MiB ONNX file (no chart), to a fresh
  repository each time;
- floor: sha256 of the file + one monolithic upload (POST + streamed PUT) with plain `requests`;
- peer: oras-py's own `push` of the same file;
- republish: the same publish again (unchanged);
- pull: `packager pull` (verified) vs floor GET + sha256.

Usage: python -m bench.publish [--sizes 16,256,1024] [--repeat 3]
"""
from __future__ import annotations

import argparse
import hashlib
import tempfile
import uuid
from pathlib import Path

import numpy as np
import onnx
import requests
from onnx import TensorProto, helper, numpy_helper

from bench.common import start_registry, summary, timed, write_result
from packager.publish import publish
from packager.reference import parse
from packager.registry import Registry
from packager.transfer import pull_to_dir


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


def floor_pull(host: str, repo: str, digest: str) -> None:
    h = hashlib.sha256()
    with requests.get(f"http://{host}/v2/{repo}/blobs/{digest}", stream=True) as r:
        for chunk in r.iter_content(4 << 20):
            h.update(chunk)
    assert "sha256:" + h.hexdigest() == digest


def peer_push(host: str, repo: str, path: Path) -> None:
    import oras.client

    client = oras.client.OrasClient(hostname=host, insecure=True)
    client.push(target=f"{host}/{repo}:v1", files=[str(path)], disable_path_validation=True)


def run(sizes: list[int], repeat: int) -> dict:
    results: dict = {"benchmarks": []}
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

                def fresh() -> str:
                    return f"{reg.host}/b{uuid.uuid4().hex[:10]}"

                pub = timed(lambda: publish(spec, registry=fresh(), plain_http=True, with_chart=False), repeat)
                floor = timed(lambda: floor_push(reg.host, f"f{uuid.uuid4().hex[:10]}/x", model), repeat)
                peer = timed(lambda: peer_push(reg.host, f"o{uuid.uuid4().hex[:10]}/x", model), repeat)
                target = fresh()
                rec = publish(spec, registry=target, plain_http=True, with_chart=False)
                again = timed(lambda: publish(spec, registry=target, plain_http=True, with_chart=False), repeat)
                ref = parse(rec["pipeline_url"])
                client = Registry(reg.host, plain_http=True)
                layer = f"sha256:{hashlib.sha256(model.read_bytes()).hexdigest()}"
                pull = timed(lambda: pull_to_dir(client, ref.repository, ref.tag,
                                                 tmp / f"out{uuid.uuid4().hex[:6]}"), repeat)
                pfloor = timed(lambda: floor_pull(reg.host, ref.repository, layer), repeat)
                row = {
                    "size_MiB": mib, "bytes": size,
                    "publish": summary(pub, bytes_=size), "floor_push": summary(floor, bytes_=size),
                    "peer_oras_push": summary(peer, bytes_=size), "republish": summary(again),
                    "pull": summary(pull, bytes_=size), "floor_pull": summary(pfloor, bytes_=size),
                }
                row["publish_vs_floor"] = row["publish"]["p50_s"] / row["floor_push"]["p50_s"]
                row["publish_vs_peer"] = row["publish"]["p50_s"] / row["peer_oras_push"]["p50_s"]
                row["republish_vs_publish"] = row["republish"]["p50_s"] / row["publish"]["p50_s"]
                row["pull_vs_floor"] = row["pull"]["p50_s"] / row["floor_pull"]["p50_s"]
                results["benchmarks"].append(row)
                print(f"{mib:5d} MiB  publish {row['publish']['p50_s']:.3f}s  floor {row['floor_push']['p50_s']:.3f}s"
                      f"  ({row['publish_vs_floor']:.2f}x)  oras {row['peer_oras_push']['p50_s']:.3f}s"
                      f"  republish {row['republish']['p50_s']:.3f}s ({row['republish_vs_publish']:.3f}x)"
                      f"  pull {row['pull']['p50_s']:.3f}s vs {row['floor_pull']['p50_s']:.3f}s"
                      f" ({row['pull_vs_floor']:.2f}x)", flush=True)
        finally:
            reg.stop()
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
