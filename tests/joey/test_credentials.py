"""Registry credentials where the container world keeps them: a `podman login` (containers auth.json, in each
place podman looks), the docker config and its credential helpers, OCI_USERNAME/OCI_PASSWORD first; and
`packager login` writes the docker config others read. Against a real htpasswd registry."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from joey.errors import ConfigError, RegistryError
from joey.registry import Registry

CLI = [sys.executable, "-m", "packager.cli"]


@pytest.fixture(autouse=True)
def no_stored_logins(tmp_path, monkeypatch):
    """Every place logins are read from points into this test's directory, empty."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def _reads(reg) -> list[str]:
    """A request the htpasswd registry answers only when logged in."""
    return Registry(reg.host, plain_http=True).tags("creds/nothing")


def _podman_login(reg, authfile, password=None):
    out = subprocess.run(["podman", "login", "--authfile", str(authfile), "--tls-verify=false", "-u", reg.username,
                          "--password-stdin", reg.host], input=password or reg.password, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("place", ["REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "~/.config"])
def test_a_podman_login_is_used(auth_registry, tmp_path, monkeypatch, place):
    authfile = {"REGISTRY_AUTH_FILE": tmp_path / "elsewhere" / "auth.json",
                "XDG_RUNTIME_DIR": tmp_path / "run" / "containers" / "auth.json",
                "~/.config": tmp_path / "home" / ".config" / "containers" / "auth.json"}[place]
    if place == "REGISTRY_AUTH_FILE":
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(authfile))
    with pytest.raises(RegistryError, match="401"):   # before the login
        _reads(auth_registry)
    _podman_login(auth_registry, authfile)
    assert _reads(auth_registry) == []


def _helper(tmp_path, monkeypatch, name: str, body: str) -> None:
    """A docker-credential-NAME program on PATH, speaking the helper protocol."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    program = bindir / f"docker-credential-{name}"
    program.write_text(f"#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n{body}\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def test_a_credential_helper_named_in_the_containers_auth_file_is_asked(auth_registry, tmp_path, monkeypatch):
    reg = auth_registry
    _helper(tmp_path, monkeypatch, "joeytest", f"""[ "$server" = "{reg.host}" ] || exit 3
printf '{{"ServerURL":"%s","Username":"{reg.username}","Secret":"{reg.password}"}}' "$server\"""")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    (tmp_path / "auth.json").write_text(json.dumps({"credHelpers": {reg.host: "joeytest"}}))
    assert _reads(reg) == []


def _docker_config(tmp_path, config: dict) -> None:
    (tmp_path / "docker").mkdir(exist_ok=True)
    (tmp_path / "docker" / "config.json").write_text(json.dumps(config))


def test_a_missing_helper_is_named(auth_registry, tmp_path):
    _docker_config(tmp_path, {"credHelpers": {auth_registry.host: "not-installed"}})
    with pytest.raises(ConfigError, match="docker-credential-not-installed"):
        _reads(auth_registry)


def test_packager_login_writes_the_docker_config(auth_registry, tmp_path):
    reg = auth_registry
    _docker_config(tmp_path, {"auths": {"other.example.com": {"auth": "eDp5"}}, "detachKeys": "ctrl-q"})
    wrong = subprocess.run([*CLI, "login", reg.host, "-u", reg.username, "--password-stdin", "--plain-http"],
                           input="wrong\n", capture_output=True, text=True)
    assert wrong.returncode == 4 and "invalid username or password" in wrong.stderr
    out = subprocess.run([*CLI, "login", reg.host, "-u", reg.username, "--password-stdin", "--plain-http"],
                         input=reg.password + "\n", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "docker" / "config.json"
    config = json.loads(path.read_text())
    assert config["detachKeys"] == "ctrl-q" and set(config["auths"]) == {"other.example.com", reg.host}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _reads(reg) == []
    # what docker and podman read: skopeo finds the same login there
    skopeo = subprocess.run(["skopeo", "list-tags", "--tls-verify=false", "--authfile", str(path),
                             f"docker://{reg.host}/creds/nothing"], capture_output=True, text=True)
    assert "unauthorized" not in skopeo.stderr.lower(), skopeo.stderr
