"""Files Joey writes get the process umask's mode (0644 files, 0755 directories under umask 022), still written
atomically, so another uid (the engine image's, a mounted store's reader) can read the store, a pull and an
export; secrets stay 0600."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from support.specs import one_step

from joey.fsutil import write_atomic
from joey.layout import OCILayout
from joey.names import parse
from joey.transfer import pull_to_dir
from packager.airgap import export_publish
from packager.publish import publish


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture()
def shared_dir():
    """A directory any uid may enter (pytest's own tmp_path sits under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="joey-modes-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _modes(root: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.rglob("*")]}


def test_store_pull_and_export_follow_the_umask(umask_022, shared_dir, example_models, write_spec, monkeypatch):
    store = shared_dir / "store"
    monkeypatch.setenv("JOEY_STORE", str(store))
    rec = publish(write_spec(one_step()))
    assert _modes(store) == {("dir", 0o755), ("file", 0o644)}
    ref = parse(rec["pipeline_url"])
    pulled = shared_dir / "pulled"
    pull_to_dir(OCILayout(store), ref.repository, ref.reference, pulled)
    assert _modes(pulled) == {("dir", 0o755), ("file", 0o644)}
    out = shared_dir / "bundle.tar"
    export_publish(rec["pipeline_url"], out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    with tarfile.open(out) as t:
        assert {m.mode for m in t.getmembers() if m.isfile()} == {0o644}
    # another uid reads the store with a standard OCI tool
    as_nobody = subprocess.run(["runuser", "-u", "nobody", "--", "skopeo", "inspect", "--raw",
                                f"oci:{store}:{ref.repository}:{ref.tag}"], capture_output=True, text=True)
    assert as_nobody.returncode == 0, as_nobody.stderr
    assert rec["pipeline_digest"].removeprefix("sha256:") in subprocess.run(
        ["sha256sum"], input=as_nobody.stdout.encode(), capture_output=True).stdout.decode()


def test_a_stricter_umask_is_kept_and_private_files_stay_private(shared_dir):
    old = os.umask(0o027)
    try:
        write_atomic(shared_dir / "shared", b"x")
        write_atomic(shared_dir / "secret", b"x", private=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((shared_dir / "shared").stat().st_mode) == 0o640
    assert stat.S_IMODE((shared_dir / "secret").stat().st_mode) == 0o600
