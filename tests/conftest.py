"""Shared fixtures: real registries on loopback, generated ONNX models, an isolated local store."""
from __future__ import annotations

import linecache
import os
import sys
import threading
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "ccfraud"))
REFERENCE = ROOT.parent / "shared" / "reference"

from support.engine_image import placeholder_engine_image  # noqa: E402
from support.registry import start_registry  # noqa: E402


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A plain-HTTP registry without auth, shared by the session."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory):
    """A registry requiring htpasswd (bcrypt) basic auth: user `joey`, password `s3cret!`."""
    reg = start_registry(tmp_path_factory.mktemp("auth-registry"), username="joey", password="s3cret!")
    yield reg
    reg.stop()


@pytest.fixture()
def fresh_registry(tmp_path):
    """A registry of this test's own, for tests that count requests or corrupt storage."""
    reg = start_registry(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture(scope="session", autouse=True)
def _engine_image_source(tmp_path_factory):
    """A registry publish copies this placeholder engine image into its registry (tests/support/engine_image.py);
    os.environ rather than monkeypatch, so that `packager` subprocesses see it too."""
    os.environ["JOEY_ENGINE_IMAGE_SOURCE"] = placeholder_engine_image(tmp_path_factory.mktemp("engine-image"))


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    """Each test gets its own embedded store and no registry credentials from the environment."""
    monkeypatch.setenv("JOEY_STORE", str(tmp_path / "store"))
    for var in ("OCI_USERNAME", "OCI_PASSWORD", "JOEY_OPS_URL", "JOEY_OPS_TOKEN", "SOURCE_DATE_EPOCH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))


@pytest.fixture()
def example_models(tmp_path) -> dict[str, Path]:
    import make_models

    paths = make_models.write(tmp_path / "models")
    return {p.stem: p for p in paths}


@pytest.fixture()
def write_spec(tmp_path):
    """write_spec(text, name='pipeline.yaml') -> Path, next to the `models/` of example_models."""

    def _write(text: str, name: str = "pipeline.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return _write


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference: real models and data. Only tests marked `reference` may use it."""
    assert REFERENCE.is_dir(), f"{REFERENCE} missing"
    return REFERENCE


_MISSING_REFERENCE: list[str] = []


def pytest_collection_modifyitems(config, items):
    """Without ../shared/reference the conformance tests cannot run: they are deselected, never passed,
    and the run ends with a banner naming each of them."""
    if REFERENCE.is_dir():
        return
    keep = []
    for item in items:
        (_MISSING_REFERENCE.append(item.nodeid) if item.get_closest_marker("reference") else keep.append(item))
    if _MISSING_REFERENCE:
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def pytest_terminal_summary(terminalreporter):
    if _MISSING_REFERENCE:
        tr = terminalreporter
        tr.section("CONFORMANCE LAYER NOT RUN", sep="!", red=True, bold=True)
        tr.write_line(f"{REFERENCE} is missing, so these {len(_MISSING_REFERENCE)} tests against the seeds' "
                      "real models and data did NOT run:", red=True)
        for nodeid in _MISSING_REFERENCE:
            tr.write_line(f"  NOT RUN {nodeid}", red=True)


def _idle_pool_worker(frame) -> bool:
    """An idle concurrent.futures worker (waiting for work) ends by itself at exit; a busy one would not."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_worker" and code.co_filename.endswith(os.path.join("concurrent", "futures", "thread.py")):
            return "work_queue.get" in linecache.getline(code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return False


def pytest_unconfigure(config):
    """A non-daemon thread left running would hang the interpreter's exit (and CI until its time-out): wait a
    little for stragglers, then name what is still running, with its stack, and exit non-zero at once."""
    leftovers = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for t in leftovers:
        t.join(10)
    alive = [t for t in leftovers if t.is_alive() and not _idle_pool_worker(sys._current_frames().get(t.ident))]
    if alive:
        frames = sys._current_frames()
        print(f"\nTHREAD LEAK: {len(alive)} non-daemon thread(s) still running after the tests:", file=sys.stderr)
        for t in alive:
            print(f"--- {t.name}", file=sys.stderr)
            traceback.print_stack(frames.get(t.ident), file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(3)


