"""The joey wheel as a user gets it: built from this checkout, installed into a fresh venv outside it, and the
engine image built by that venv's own `packager image build`.

The venv gets the wheel alone (`--no-deps`); its dependencies come from this venv's site-packages through a
.pth file, which adds that directory to sys.path without running its .pth files, so the checkout's editable
install stays invisible and no package index is needed for them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from packager.distwheel import build_project_wheel

# Settings of this test session that would make the venv's tools use the checkout's files or the placeholder
# engine image (tests/support/engine_image.py) instead of their own.
LEAKED = ("PYTHONPATH", "JOEY_ENGINE_IMAGE_SOURCE", "JOEY_CHART_DIR", "VIRTUAL_ENV")


@dataclass(frozen=True)
class WheelVenv:
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment to run the venv's tools in: this process's (as the test has set it), its tools first
        on PATH, none of LEAKED, plus `extra`."""
        env = {k: v for k, v in os.environ.items() if k not in LEAKED}
        env["PATH"] = f"{self.bin}{os.pathsep}{env['PATH']}"
        return env | extra

    def run(self, cwd: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
        """Run a command in the venv's environment (default: env()); its stdout, asserting it succeeded."""
        out = subprocess.run(list(args), cwd=cwd, env=env or self.env(), input=stdin, capture_output=True,
                             text=True)
        assert out.returncode == 0, f"{' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out.stdout


def install_wheel(work: Path) -> WheelVenv:
    """Build the joey wheel into WORK/dist and install it alone into the venv WORK/venv."""
    wheel = build_project_wheel(work / "dist")
    venv = WheelVenv(work / "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv.root)], check=True)
    python = str(venv.bin / "python")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True)
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "joey-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def packager_image_build(venv: WheelVenv, cwd: Path) -> str:
    """`packager image build` from the venv; the image it tagged, where publish looks for it in podman's store."""
    return json.loads(venv.run(cwd, "packager", "image", "build", "--json"))["image"]
