"""Hostile packager inputs at the default limits: a model declaring tensors no engine can hold (refused by the spec;
an engine given one anyway exits with its documented code), and `packager import` of a decompression bomb or of a
layout naming nothing (refused, nothing written)."""
from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import tarfile
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from support.engine import publish_spec, start_engine
from support.procs import wait_for

from joey.errors import SpecError
from packager.airgap import IMPORT_MIN_BYTES
from packager.spec import MAX_TENSOR_VALUES, load_spec

PACKAGER = str(Path(sys.executable).parent / "packager")
SPEC = "name: big-dims\nsteps:\n  - name: identity\n    model: identity.onnx\n"


def identity_model(path: Path, in_shape: list, out_shape: list | None = None) -> Path:
    """An ONNX Identity whose input and output declare these shapes (onnx's checker accepts any dim)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape or in_shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("in_shape, out_shape, where", [
    ([None, 2**40], [None, 1], "input 'x'"),                  # the issue's case: 8 TiB for the warm-up rows
    ([None, 4], [None, 2**40], "output 'y'"),
    ([None, 2**12, 2**12, 2], [None, 1], "input 'x'"),        # every dim small, their product over the bound
    ([2**20, 32], [None, 1], "input 'x'"),                    # a fixed batch dim counts
])
def test_a_declared_tensor_beyond_the_bound_is_a_located_spec_error(tmp_path, in_shape, out_shape, where):
    identity_model(tmp_path / "identity.onnx", in_shape, out_shape)
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    with pytest.raises(SpecError) as e:
        load_spec(tmp_path / "pipeline.yaml")
    [issue] = e.value.issues
    assert (issue.line, issue.col, issue.path) == (4, 12, "steps[0].model")
    assert where in issue.message and f"limit of {MAX_TENSOR_VALUES}" in issue.message
    assert "JOEY_MAX_TENSOR_VALUES" in issue.message


def test_a_tensor_at_the_bound_loads(tmp_path):
    identity_model(tmp_path / "identity.onnx", [None, MAX_TENSOR_VALUES])
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    assert load_spec(tmp_path / "pipeline.yaml").config.steps[0].model.inputs[0].width == MAX_TENSOR_VALUES


def test_an_engine_given_such_a_model_exits_5_with_one_line(tmp_path, registry, monkeypatch):
    """Published past the bound (raised on purpose), the engine cannot allocate its warm-up rows: a bad artifact,
    exit 5 and one ERROR line, not a MemoryError traceback and exit 1."""
    identity_model(tmp_path / "identity.onnx", [None, 2**40])
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    monkeypatch.setenv("JOEY_MAX_TENSOR_VALUES", str(2**50))
    record = publish_spec(tmp_path / "pipeline.yaml", registry)
    eng = start_engine(record["pipeline_url"], tmp_path / "persist", wait_ready=False)
    try:
        wait_for("the engine to exit", lambda: eng.proc.poll() is not None, timeout=90)
    finally:
        eng.stop()
    errors = [line for line in eng.log_text().splitlines() if "ERROR" in line]
    assert eng.proc.returncode == 5, eng.log_text()[-2000:]
    assert len(errors) == 1 and "declares 1099511627776 values per row" in errors[0], errors
    assert "Traceback" not in eng.log_text()


# ---- packager import --------------------------------------------------------------------------------------------

class Zeros(io.RawIOBase):
    """`size` zero bytes, read without ever being held: the bomb is written without a bomb's worth of memory."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def layout_tar(path: Path, blobs: dict[str, int], *, manifests: list | None = None) -> Path:
    """A gzip'd OCI layout: oci-layout, index.json naming `manifests`, and blobs of zeros of the given sizes."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
                           ("index.json", json.dumps({"schemaVersion": 2, "manifests": manifests or []}).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, size in blobs.items():
            info = tarfile.TarInfo(f"blobs/sha256/{name}")
            info.size = size
            tar.addfile(info, io.BufferedReader(Zeros(size)))
    return path


WRITE_CAP = 32 * 2**20


def packager_import(archive: Path, registry, tmp: Path) -> subprocess.CompletedProcess:
    """`packager import` with its temp dir in `tmp` and no file of it allowed past WRITE_CAP (RLIMIT_FSIZE): a
    run that writes more than that is killed by SIGXFSZ, so a pass shows the peak disk use stayed below it."""
    tmp.mkdir()
    return subprocess.run([PACKAGER, "import", str(archive), "--registry", f"{registry.host}/bomb", "--plain-http"],
                          capture_output=True, text=True, env={**os.environ, "TMPDIR": str(tmp)},
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (WRITE_CAP, WRITE_CAP)))


def test_import_refuses_a_decompression_bomb_before_writing_it(tmp_path, registry, monkeypatch):
    monkeypatch.delenv("JOEY_IMPORT_MAX_BYTES", raising=False)   # the default limit
    bomb = layout_tar(tmp_path / "bomb.tar.gz", {"0" * 64: 4 * IMPORT_MIN_BYTES})
    assert bomb.stat().st_size < 2**20   # 256 MiB of zeros in well under 1 MiB
    done = packager_import(bomb, registry, tmp_path / "tmp")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 5, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and "expands to more than" in lines[0] and "JOEY_IMPORT_MAX_BYTES" in lines[0], lines
    assert list((tmp_path / "tmp").iterdir()) == []


def test_import_of_a_layout_naming_nothing_exits_non_zero(tmp_path, registry):
    empty = layout_tar(tmp_path / "empty.tar.gz", {"1" * 64: 1024})
    done = packager_import(empty, registry, tmp_path / "tmp")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 5, (done.returncode, done.stdout, done.stderr[-2000:])
    assert len(lines) == 1 and "nothing to import" in lines[0], lines
    assert list((tmp_path / "tmp").iterdir()) == []
