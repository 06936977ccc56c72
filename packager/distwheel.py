"""The joey wheel the engine image installs: built from the source checkout when there is one, else repacked
from the installed distribution, so that `packager image build` works from `pip install joey` as well.

A wheel is a zip of the installed files plus its .dist-info (PEP 427); repacking writes the files the
distribution's RECORD lists back into one, minus what installing added (console scripts, byte code, INSTALLER,
REQUESTED, direct_url.json), with a fresh RECORD and fixed timestamps so that it is the same bytes every time.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from joey.errors import ToolFailed

DISTRIBUTION = "joey"
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("joey", "packager", "engine", "opscenter", "infra")
# Written by the installer, not part of the wheel (PEP 376, PEP 610).
INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class WheelError(ToolFailed):
    """The joey wheel for the image could not be made: pip failed, or the installed distribution is not whole."""

    def __init__(self, detail: str, *, hint: str | None = None):
        super().__init__(f"engine image: project wheel failed: {detail}", hint=hint)


def source_checkout() -> Path | None:
    """The checkout joey runs from (an editable install), or None for an installed wheel."""
    return ROOT if (ROOT / "pyproject.toml").is_file() and (ROOT / "packager").is_dir() else None


def project_sources(root: Path) -> list[Path]:
    """The files the joey wheel is built from, relative to the checkout `root`."""
    files = [Path(n) for n in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in") if (root / n).exists()]
    for package in PACKAGES:
        files += sorted(p.relative_to(root) for p in (root / package).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return files


def wheel_inputs() -> list[Path]:
    """The files the joey wheel is made of (absolute paths): the checkout's sources, else the installed files."""
    root = source_checkout()
    return [root / rel for rel in project_sources(root)] if root else installed_files()


def installed_files() -> list[Path]:
    """The installed distribution's own files (absolute paths), as its RECORD lists them."""
    dist = importlib.metadata.distribution(DISTRIBUTION)
    files = []
    for rel in dist.files or []:
        if rel.parts[0] == ".." or "__pycache__" in rel.parts or rel.suffix == ".pyc":
            continue   # console scripts (bin/, rewritten by every installer) and byte code
        if rel.parts[0].endswith(".dist-info") and rel.name in INSTALLER_FILES:
            continue
        files.append(Path(str(dist.locate_file(rel))))
    return files


def build_project_wheel(out_dir: Path) -> Path:
    """out_dir emptied and given the one joey wheel: built from the checkout, else repacked from the install."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    root = source_checkout()
    return _build_from(root, out_dir) if root else repack_installed(out_dir)


def _build_from(root: Path, out_dir: Path) -> Path:
    """`pip wheel` of a clean copy of the sources, so a stale build/ tree can never leak in."""
    with tempfile.TemporaryDirectory(prefix="joey-src-") as tmp:
        for rel in project_sources(root):
            (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, Path(tmp) / rel)
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                               str(out_dir), tmp], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise WheelError(f"pip wheel exited with {proc.returncode}\n{tail}")
    wheels = list(out_dir.glob(f"{DISTRIBUTION}-*.whl"))
    if len(wheels) != 1:
        raise WheelError(f"expected one {DISTRIBUTION} wheel in {out_dir}, found {len(wheels)}")
    return wheels[0]


def repack_installed(out_dir: Path) -> Path:
    """The installed distribution written back into a wheel in out_dir."""
    dist = importlib.metadata.distribution(DISTRIBUTION)
    site = Path(str(dist.locate_file("")))
    files = sorted(installed_files())
    info = next((p.parent for p in files if p.name == "WHEEL" and p.parent.name.endswith(".dist-info")), None)
    if info is None:
        raise WheelError(f"the installed {DISTRIBUTION} {dist.version} has no .dist-info/WHEEL",
                         hint="reinstall it from a wheel (pip install joey), or run from a checkout")
    wheel = out_dir / f"{info.name.removesuffix('.dist-info')}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for path in files:
            name = path.relative_to(site).as_posix()
            data = path.read_bytes()
            _write(z, name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}\n")
        record.append(f"{info.name}/RECORD,,\n")
        _write(z, f"{info.name}/RECORD", "".join(record).encode())
    return wheel


def _write(z: zipfile.ZipFile, name: str, data: bytes) -> None:
    entry = zipfile.ZipInfo(name, ZIP_EPOCH)
    entry.external_attr = 0o644 << 16
    entry.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(entry, data)
