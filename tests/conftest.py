"""Shared fixtures: real registries on loopback, generated ONNX models, an isolated local store."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "ccfraud"))
REFERENCE = ROOT.parent / "shared" / "reference"

from support.engine_image import placeholder_engine_image  # noqa: E402
from support.registry import start_registry  # noqa: E402
from support.threads import pytest_unconfigure  # noqa: E402,F401  (the end-of-session thread check)
from support.wheel import WheelVenv, install_wheel, packager_image_build  # noqa: E402


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


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory) -> WheelVenv:
    """A fresh venv outside the checkout holding only the joey wheel built from it (tests/support/wheel.py)."""
    return install_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def engine_image(wheel_venv, tmp_path_factory) -> str:
    """The real engine image, built once a session by the wheel venv's `packager image build`; its tag."""
    return packager_image_build(wheel_venv, tmp_path_factory.mktemp("image-build"))


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


_REFERENCE_RESULTS: dict[str, int] = {}


def pytest_runtest_logreport(report):
    """Tally the reference layer's outcomes (the call phase, or the phase that failed or skipped before it)."""
    if "reference" in report.keywords and (report.when == "call" or not report.passed):
        _REFERENCE_RESULTS[report.outcome] = _REFERENCE_RESULTS.get(report.outcome, 0) + 1


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    if not _MISSING_REFERENCE:
        ran = sum(_REFERENCE_RESULTS.values())
        outcomes = ", ".join(f"{n} {outcome}" for outcome, n in sorted(_REFERENCE_RESULTS.items()))
        tests = f"{ran} test{'' if ran == 1 else 's'}" + (f" ({outcomes})" if outcomes else "")
        tr.write_line(f"reference layer: ran {tests} against {REFERENCE}",
                      green=ran > 0 and "failed" not in _REFERENCE_RESULTS)
    else:
        tr.section("CONFORMANCE LAYER NOT RUN", sep="!", red=True, bold=True)
        tr.write_line(f"{REFERENCE} is missing, so these {len(_MISSING_REFERENCE)} tests against the seeds' "
                      "real models and data did NOT run:", red=True)
        for nodeid in _MISSING_REFERENCE:
            tr.write_line(f"  NOT RUN {nodeid}", red=True)
