"""Scenario 11 — extraction attacks: layer titles and tar members that try to write outside their directory
(`../`, absolute, sibling-prefix paths, symlinks planted in the output dir) are refused, and nothing is written
outside. Covers packager.fsutil.safe_join, packager.transfer.pull_to_dir, the engine's pipeline cache and
`packager import` (air-gap)."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from engine.fetch import PipelineCache, fetch
from engine.settings import from_env
from joey import annotations as ann
from joey.descriptor import Descriptor, Manifest, manifest_bytes
from joey.errors import UnsafePath
from joey.fsutil import safe_join
from joey.registry import Registry
from joey.transfer import pull_to_dir

PACKAGER = str(Path(sys.executable).with_name("packager"))
HOSTILE_TITLES = ["../evil.onnx", "../../evil.onnx", "/tmp/joey-evil.onnx", "models/../../evil.onnx",
                  "../out-evil/evil.onnx", "a/./../../evil.onnx", "", "nul\0byte.onnx"]


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_safe_join_refuses_titles_that_leave_the_root(tmp_path, title):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafePath):
        safe_join(out, title)


def test_safe_join_refuses_symlinks_planted_in_the_output_dir(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "models").symlink_to(outside, target_is_directory=True)     # a directory leading out
    (out / "model.onnx").symlink_to(outside / "victim")               # a file leading out (dangling)
    (out / "ok").mkdir()
    for title in ("models/x.onnx", "model.onnx"):
        with pytest.raises(UnsafePath):
            safe_join(out, title)
    assert safe_join(out, "ok/x.onnx") == (out / "ok" / "x.onnx").resolve()


def test_sibling_prefix_is_not_inside(tmp_path):
    """/x/out-evil starts with the string /x/out but is not inside it; a symlink making the prefix look right
    is refused too."""
    out, sibling = tmp_path / "out", tmp_path / "out-evil"
    out.mkdir()
    sibling.mkdir()
    (out / "sib").symlink_to(sibling, target_is_directory=True)
    for title in ("../out-evil/f", "sib/f"):
        with pytest.raises(UnsafePath):
            safe_join(out, title)


# ---- artifacts with hostile titles, in a real registry -------------------------------------------------------

def push_hostile(registry, published: dict, repo: str, tag: str, title: str) -> str:
    """Re-push the published pipeline with its model layer (and the config's step file) renamed `title`."""
    src = Registry(registry.host, plain_http=True)
    source_repo, _, ref = published["pipeline_url"].split("/", 1)[1].partition(":")
    raw, _, _ = src.resolve(source_repo, ref)
    manifest = Manifest.parse(raw, "published")
    with src.read_blob(source_repo, manifest.config.digest) as f:
        config = json.loads(f.read())
    (layer,) = manifest.layers
    with src.read_blob(source_repo, layer.digest) as f:
        model = f.read()
    for step in config["steps"]:
        step["file"] = title
    config_bytes = json.dumps(config).encode()
    config_desc = Descriptor.for_bytes(manifest.config.media_type, config_bytes)
    layer_desc = Descriptor(layer.media_type, layer.digest, layer.size, {**layer.annotations, ann.TITLE: title})
    src.write_blob(repo, config_desc, io.BytesIO(config_bytes))
    src.write_blob(repo, layer_desc, io.BytesIO(model))
    src.write_manifest(repo, tag, manifest_bytes(config_desc, [layer_desc], manifest.annotations,
                                                 manifest.artifact_type), manifest.media_type)
    return f"{registry.host}/{repo}:{tag}"


@pytest.mark.parametrize("title", ["../evil.onnx", "/tmp/joey-evil.onnx", "../out-evil/evil.onnx"])
def test_pull_to_dir_refuses_hostile_titles_before_writing(registry, published, tmp_path, title):
    push_hostile(registry, published, "joey/pipelines/hostile", "t1", title)
    work = tmp_path / "work"
    out = work / "out"
    with pytest.raises(UnsafePath):
        pull_to_dir(Registry(registry.host, plain_http=True), "joey/pipelines/hostile", "t1", out)
    assert tree(work) == {"out"} and not any(out.iterdir())
    assert not Path("/tmp/joey-evil.onnx").exists()


def test_pull_to_dir_does_not_follow_planted_symlinks(registry, published, tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("untouched")
    title = published_title(registry, published)
    (out / title).symlink_to(outside / "victim")                 # the model file itself
    (out / "config.json").symlink_to(outside / "victim")          # files pull_to_dir always writes
    (out / "manifest.json").symlink_to(outside / "victim")
    source_repo, _, ref = published["pipeline_url"].split("/", 1)[1].partition(":")
    with pytest.raises(UnsafePath):
        pull_to_dir(Registry(registry.host, plain_http=True), source_repo, ref, out)
    assert (outside / "victim").read_text() == "untouched" and tree(outside) == {"victim"}


def published_title(registry, published: dict) -> str:
    source_repo, _, ref = published["pipeline_url"].split("/", 1)[1].partition(":")
    raw, _, _ = Registry(registry.host, plain_http=True).resolve(source_repo, ref)
    return Manifest.parse(raw, "published").layers[0].annotations[ann.TITLE]


def test_cli_pull_refuses_a_hostile_title_with_one_line(registry, published, tmp_path):
    url = push_hostile(registry, published, "joey/pipelines/hostile", "cli", "../evil.onnx")
    done = subprocess.run([PACKAGER, "pull", url, "--out", str(tmp_path / "out"), "--plain-http"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == UnsafePath.exit_code
    assert done.stderr.strip().splitlines() == [f"error: {UnsafePath('../evil.onnx').one_line()}"]
    assert not (tmp_path / "evil.onnx").exists()


def test_the_engine_refuses_a_hostile_title_and_writes_nothing_outside(registry, published, tmp_path):
    url = push_hostile(registry, published, "joey/pipelines/hostile", "engine", "../../evil.onnx")
    persist = tmp_path / "persist"
    settings = from_env({"PIPELINE_URL": url, "JOEY_PLAIN_HTTP": "true"}, persist_dir=persist)
    with pytest.raises(UnsafePath):
        fetch(settings)
    assert tree(tmp_path) <= {"persist", "persist/pipelines"}
    assert PipelineCache(persist / "pipelines").current() is None


def test_a_symlink_planted_in_the_engine_cache_is_not_followed(registry, published, tmp_path):
    """A cached model file replaced by a symlink to a file outside: the copy counts as damaged, is deleted
    (the link, not its target) and pulled again."""
    persist, outside = tmp_path / "persist", tmp_path / "outside"
    outside.mkdir()
    settings = from_env({"PIPELINE_URL": published["pipeline_url"], "JOEY_PLAIN_HTTP": "true"},
                        persist_dir=persist)
    first = fetch(settings)
    model = first.directory / published_title(registry, published)
    (outside / "victim").write_bytes(model.read_bytes())   # even with the right bytes, a link is refused
    model.unlink()
    model.symlink_to(outside / "victim")
    again = fetch(settings)
    assert not again.from_cache and not model.is_symlink() and model.is_file()
    assert tree(outside) == {"victim"}


# ---- air-gap import -------------------------------------------------------------------------------------

def hostile_tar(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w") as t:
        t.addfile(tarfile.TarInfo("oci-layout"), io.BytesIO(b""))
        member.size = len(data) if member.isfile() else 0
        t.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _hardlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


IMPORT_ATTACKS = {
    "dotdot": lambda: tarfile.TarInfo("../escape"),
    "absolute": lambda: tarfile.TarInfo("/tmp/joey-escape"),
    "nested-dotdot": lambda: tarfile.TarInfo("blobs/../../escape"),
    "symlink-out": lambda: _symlink("blobs", "/etc"),
    "hardlink-out": lambda: _hardlink("index.json", "/etc/passwd"),
}


def run_import(registry, tmp_path, member: tarfile.TarInfo) -> subprocess.CompletedProcess:
    (tmp_path / "work").mkdir()
    bad = hostile_tar(tmp_path / "work" / "bad.tar", member)
    return subprocess.run([PACKAGER, "import", str(bad), "--registry", f"{registry.host}/dst", "--plain-http"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path / "work")


@pytest.mark.parametrize("attack", sorted(IMPORT_ATTACKS))
def test_import_writes_nothing_outside(registry, tmp_path, attack):
    done = run_import(registry, tmp_path, IMPORT_ATTACKS[attack]())
    assert tree(tmp_path) == {"work", "work/bad.tar"}
    assert not Path("/tmp/joey-escape").exists() and not Path("/tmp/escape").exists()
    assert done.returncode != 0 and "Traceback" not in done.stderr


@pytest.mark.parametrize("attack", ["absolute", "dotdot", "nested-dotdot"])
def test_import_names_the_unsafe_member_as_unsafe_path(registry, tmp_path, attack):
    member = IMPORT_ATTACKS[attack]()
    done = run_import(registry, tmp_path, member)
    assert done.returncode == UnsafePath.exit_code
    assert done.stderr.strip().splitlines() == [f"error: {UnsafePath(member.name).one_line()}"]
