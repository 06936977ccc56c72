"""Registry credentials where the container world keeps them, and `packager login`'s way of storing them.

Looked up in the order containers/image (podman, skopeo, buildah) reads them, so a `podman login` or a
`docker login` done before works here too:

1. the containers auth file: $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json;
2. ~/.config/containers/auth.json;
3. the docker config: $DOCKER_CONFIG/config.json, else ~/.docker/config.json.

In each file a registry's `credHelpers` entry wins, then its `auths` entry (`auth`, base64 USER:PASSWORD, or
`username` and `password`), then the file's `credsStore`. Helpers speak the docker-credential-helpers protocol:
`docker-credential-NAME get` reads the server on stdin and answers {"Username": ..., "Secret": ...}.
(Environment variables, OCI_USERNAME and OCI_PASSWORD, win over all of these; joey/registry.py reads them.)
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from joey.errors import ConfigError
from joey.fsutil import write_atomic

HELPER_TIMEOUT_S = 30
# Keys docker writes for Docker Hub rather than its host name.
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


def auth_files() -> list[Path]:
    """The files credentials are read from, in order (whether or not they exist)."""
    files = []
    if env := os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env))
    elif runtime := os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(runtime) / "containers" / "auth.json")
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [*files, config_home / "containers" / "auth.json", docker_config()]


def docker_config() -> Path:
    """$DOCKER_CONFIG/config.json, else ~/.docker/config.json: where docker (and `packager login`) store logins."""
    directory = os.environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


def lookup(host: str) -> tuple[str, str] | None:
    """(username, password) for `host` (HOST[:PORT]) from the first file that has some, else None."""
    for path in auth_files():
        config = _read(path)
        if config is not None and (found := _from_config(config, host, path)):
            return found
    return None


def store_login(host: str, username: str, password: str) -> Path:
    """Record a login the way `docker login` does without a credential store: auths[HOST].auth in the docker
    config, the file's other settings kept, readable by its owner only."""
    path = docker_config()
    config = _read(path) or {}
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    config.setdefault("auths", {})[host] = {"auth": auth}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(config, indent="\t") + "\n").encode(), private=True)
    return path


def _read(path: Path) -> dict[str, Any] | None:
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ConfigError(str(path), f"not a readable registry auth file ({e})") from None
    if not isinstance(config, dict):
        raise ConfigError(str(path), "not a registry auth file (expected a JSON object)")
    return config


def _normal(key: str) -> str:
    """An auths/credHelpers key as a host: docker also writes https://HOST/v1/ and the like."""
    key = key.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if key in _DOCKER_HUB else key


def _from_config(config: dict[str, Any], host: str, path: Path) -> tuple[str, str] | None:
    host = _normal(host)
    helpers = {_normal(k): v for k, v in (config.get("credHelpers") or {}).items()}
    if host in helpers:
        return _from_helper(helpers[host], host)
    auths = {_normal(k): v for k, v in (config.get("auths") or {}).items()}
    entry = auths.get(host) or {}
    if entry.get("auth"):
        try:
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{path}: auths.{host}.auth", "not base64 of USER:PASSWORD") from None
        return username, password
    if entry.get("username") and entry.get("password"):
        return entry["username"], entry["password"]
    if config.get("credsStore"):
        return _from_helper(config["credsStore"], host)
    return None


def _from_helper(name: str, host: str) -> tuple[str, str] | None:
    """Ask `docker-credential-NAME get`; None when it has nothing for `host`."""
    program = f"docker-credential-{name}"
    try:
        out = subprocess.run([program, "get"], input=host, capture_output=True, text=True,
                             timeout=HELPER_TIMEOUT_S)
    except FileNotFoundError:
        raise ConfigError(program, "credential helper not found on PATH (named by the docker config)") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(program, f"credential helper gave no answer for {host} within {HELPER_TIMEOUT_S}s") \
            from None
    if out.returncode != 0:
        if "not found" in (out.stdout + out.stderr).lower():   # the protocol's "no credentials for this server"
            return None
        raise ConfigError(program, f"credential helper failed for {host}: {out.stderr.strip()[:200]}")
    try:
        answer = json.loads(out.stdout)
        return answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(program, f"credential helper answered {host} with no Username and Secret") from None
