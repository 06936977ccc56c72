"""The package is the product: the joey wheel, installed into a fresh venv outside the checkout, publishes to a
registry (pipeline, chart, record, engine image) and renders the engine image's build context by itself.

The venv gets the wheel alone (`--no-deps`); its dependencies come from this venv's site-packages through a
.pth file, which adds that directory to sys.path without running its .pth files, so the checkout's editable
install stays invisible and no package index is needed for them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from packager.distwheel import build_project_wheel

ROOT = Path(__file__).resolve().parents[2]
SPEC = "name: wheel-pipeline\nsteps:\n  - name: ccfraud-logreg\n    model: models/ccfraud-logreg.onnx\n" \
       "    tensor_fields: [tensor]\n"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """A venv holding only the joey wheel built from this checkout: the environment to run its tools in."""
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_project_wheel(work / "dist")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "joey-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JOEY_ENGINE_IMAGE_SOURCE",
                                                            "JOEY_CHART_DIR", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def run(env: dict[str, str], cwd: Path, *args: str) -> str:
    out = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_the_installed_wheel_runs_from_its_own_files(installed, tmp_path):
    where = run(installed, tmp_path, "python", "-c", "import engine, joey, packager; "
                                                      "print(packager.__file__, engine.__file__, joey.__file__)")
    assert all("/venv/" in p and not p.startswith(str(ROOT)) for p in where.split()), where
    assert shutil.which("packager", path=installed["PATH"]).startswith(str(tmp_path.parent))


def test_validate_publish_from_the_installed_wheel(installed, example_models, tmp_path, registry):
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    run(installed, tmp_path, "packager", "validate", "pipeline.yaml")
    record = json.loads(run(installed, tmp_path, "packager", "publish", "pipeline.yaml", "--registry",
                            f"{registry.host}/wheel", "--plain-http", "--json",
                            "--engine-image", os.environ["JOEY_ENGINE_IMAGE_SOURCE"]))
    assert record["engine_url"].startswith(f"{registry.host}/wheel/engines/joey-engine@sha256:")
    for ref, raw in ((record["engine_url"], []), (record["helm"]["reference"], ["--raw"]),
                     (record["pipeline_url"], ["--raw"])):
        run(installed, tmp_path, "skopeo", "inspect", "--tls-verify=false", *raw, f"docker://{ref}")
    listed = json.loads(run(installed, tmp_path, "packager", "publishes", "wheel-pipeline", "--registry",
                            f"{registry.host}/wheel", "--plain-http", "--json"))["publishes"]
    assert [r["pipeline_digest"] for r in listed] == [record["pipeline_digest"]]


def test_the_image_build_context_renders_from_the_installed_package(installed, tmp_path):
    context = tmp_path / "context"
    run(installed, tmp_path, "python", "-c", "import sys; from pathlib import Path; "
        "from packager.image import write_build_context; write_build_context(Path(sys.argv[1]))", str(context))
    assert (context / "Dockerfile").read_bytes() == (ROOT / "engine" / "Dockerfile").read_bytes()
    (wheel,) = (context / "app").glob("joey-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {"engine/Dockerfile", "packager/data/chart/Chart.yaml", "packager/data/chart/templates/deployment.yaml",
            "joey/__init__.py", "engine/__main__.py"} <= names
    assert not any(n.endswith(".pyc") or n.startswith("../") for n in names)
    # the repacked wheel installs as the Dockerfile installs it: --no-index --no-deps
    target = tmp_path / "target"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), str(wheel)], check=True)
    assert (target / "packager" / "data" / "chart" / "values.schema.json").is_file()
