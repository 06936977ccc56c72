"""The package is the product: the joey wheel, installed into a fresh venv outside the checkout (the session's
`wheel_venv`, tests/support/wheel.py), publishes to a registry (pipeline, chart, record, engine image) and renders
the engine image's build context by itself.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = "name: wheel-pipeline\nsteps:\n  - name: ccfraud-logreg\n    model: models/ccfraud-logreg.onnx\n" \
       "    tensor_fields: [tensor]\n"


def test_the_installed_wheel_runs_from_its_own_files(wheel_venv, tmp_path):
    where = wheel_venv.run(tmp_path, "python", "-c", "import engine, joey, packager; "
                                                      "print(packager.__file__, engine.__file__, joey.__file__)")
    assert all("/venv/" in p and not p.startswith(str(ROOT)) for p in where.split()), where
    assert shutil.which("packager", path=wheel_venv.env()["PATH"]).startswith(str(wheel_venv.root))


def test_validate_publish_from_the_installed_wheel(wheel_venv, example_models, tmp_path, registry):
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    wheel_venv.run(tmp_path, "packager", "validate", "pipeline.yaml")
    record = json.loads(wheel_venv.run(tmp_path, "packager", "publish", "pipeline.yaml", "--registry",
                            f"{registry.host}/wheel", "--plain-http", "--json",
                            "--engine-image", os.environ["JOEY_ENGINE_IMAGE_SOURCE"]))
    assert record["engine_url"].startswith(f"{registry.host}/wheel/engines/joey-engine@sha256:")
    for ref, raw in ((record["engine_url"], []), (record["helm"]["reference"], ["--raw"]),
                     (record["pipeline_url"], ["--raw"])):
        wheel_venv.run(tmp_path, "skopeo", "inspect", "--tls-verify=false", *raw, f"docker://{ref}")
    listed = json.loads(wheel_venv.run(tmp_path, "packager", "publishes", "wheel-pipeline", "--registry",
                            f"{registry.host}/wheel", "--plain-http", "--json"))["publishes"]
    assert [r["pipeline_digest"] for r in listed] == [record["pipeline_digest"]]


def test_the_image_build_context_renders_from_the_installed_package(wheel_venv, tmp_path):
    context = tmp_path / "context"
    wheel_venv.run(tmp_path, "python", "-c", "import sys; from pathlib import Path; "
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
