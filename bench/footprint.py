"""The engine image's footprint without building it: the installed size of the wheel set the image installs
(packager.image.ENGINE_REQUIREMENTS and what they require, as installed here), less what engine/Dockerfile
deletes after installing; and, when `packager image build` has made the image on this machine, its size.

The base (Debian bookworm with python3, made by mmdebstrap) comes on top of the wheel set; a `podman build`
takes ~5 minutes, so the benchmark reads an image only if one is there.

Usage: python -m bench.footprint
"""
from __future__ import annotations

import importlib.metadata as md
import json
import re
import shutil
import subprocess

from packaging.requirements import Requirement

from packager.image import DEFAULT_TAG, ENGINE_REQUIREMENTS

# What engine/Dockerfile removes from site-packages after installing (path fragments).
REMOVED = ("/tests/", "onnx/backend/test/data", "pyarrow/include/", "pyarrow/src/", "flight",
           "_pyarrow_cpp_tests", "pyarrow/libarrow_s3", "pyarrow/_s3fs", "pyarrow/_gcsfs", "pyarrow/_azurefs",
           "pyarrow/_hdfs")
_DEV_COPIES = re.compile(r"pyarrow/libarrow_python\.so(\.\d+\.\d+\.\d+)?$")


def _name(n: str) -> str:
    return re.sub(r"[-_.]+", "-", n).lower()


def closure(roots: tuple[str, ...]) -> dict[str, md.Distribution]:
    """The installed distributions `roots` need, transitively (no extras)."""
    seen: dict[str, md.Distribution] = {}
    todo = list(roots)
    while todo:
        name = _name(todo.pop())
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def installed_bytes(dist: md.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        path = "/" + str(f)
        if any(part in path for part in REMOVED) or _DEV_COPIES.search(path):
            continue
        try:
            total += dist.locate_file(f).stat().st_size
        except OSError:
            pass
    return total


def image_bytes(tag: str = DEFAULT_TAG) -> int | None:
    """The uncompressed size of the engine image, if it is built here."""
    if shutil.which("podman") is None:
        return None
    r = subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True, text=True)
    return int(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip().isdigit() else None


def run() -> dict:
    dists = closure(ENGINE_REQUIREMENTS)
    sizes = {name: installed_bytes(d) for name, d in dists.items()}
    return {"requirements": list(ENGINE_REQUIREMENTS), "distributions": len(sizes),
            "wheel_set_MB": sum(sizes.values()) / 1e6,
            "largest_MB": {n: round(b / 1e6, 1) for n, b in sorted(sizes.items(), key=lambda kv: -kv[1])[:6]},
            "image_tag": DEFAULT_TAG, "image_MB": (lambda b: b / 1e6 if b else None)(image_bytes())}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
