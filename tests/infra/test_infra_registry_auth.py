"""The cluster registry as the program declares it, run by a real CNCF distribution: it requires auth.

The registry Deployment's container is played out on loopback the way a kubelet would: its environment,
with secretKeyRefs resolved from the Secret the program declares, and its Secret volume written to disk
(mount paths moved under a temporary root). The htpasswd line is the program's, from the password the
random provider generated (its bcrypt hash made by htpasswd in the mocks).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import requests
import yaml
from support.infra import recorded
from support.procs import free_port, start, stop, wait_http
from support.registry import registry_binary


def materialize(deployment: dict, secrets: dict[str, dict[str, str]], root: Path, port: int) -> dict[str, str]:
    """The container's environment as the kubelet would give it, its Secret volumes written under `root`."""
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    moved: dict[str, str] = {}
    for mount in container["volumeMounts"]:
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        moved[mount["mountPath"]] = str(target)
        source = volumes[mount["name"]].get("secret")
        if source:
            data = secrets[source["secretName"]]
            for item in source.get("items") or [{"key": k, "path": k} for k in data]:
                (target / item["path"]).write_text(data[item["key"]])
    env = {}
    for e in container["env"]:
        if "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[ref["name"]][ref["key"]]
            continue
        value = e["value"]
        for path, new in sorted(moved.items(), key=lambda m: -len(m[0])):
            if value == path or value.startswith(path + "/"):
                value = new + value[len(path):]
                break
        env[e["name"]] = value
    env["REGISTRY_HTTP_ADDR"] = f"127.0.0.1:{port}"   # the pod's :5000, on a free loopback port
    return env


def test_the_declared_registry_refuses_anonymous_clients(tmp_path):
    rec = recorded("dev")
    deployment = rec.named("registry-deployment").inputs
    auth = rec.named("registry-auth").inputs
    secrets = {auth["metadata"]["name"]: auth["stringData"]}
    port = free_port()
    env = materialize(deployment, secrets, tmp_path / "pod", port)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"version": 0.1, "log": {"level": "info"},
                                      "storage": {"filesystem": {"rootdirectory": str(tmp_path / "unused")}}}))
    log = tmp_path / "registry.log"
    proc = start([registry_binary(), "serve", str(config)], log, env=env)
    try:
        base = f"http://127.0.0.1:{port}/v2/"
        wait_http(base, proc=proc, log=log)
        password = rec.generated["random:registry-password"]
        assert requests.get(base, timeout=5).status_code == 401
        assert requests.get(base, auth=("joey", "wrong-password"), timeout=5).status_code == 401
        assert requests.get(base, auth=("joey", password), timeout=5).status_code == 200
        blob = b"joey"
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        started = requests.post(f"{base}joey/probe/blobs/uploads/", auth=("joey", password), timeout=5)
        assert started.status_code == 202
        location = requests.compat.urljoin(base, started.headers["Location"])
        pushed = requests.put(location, params={"digest": digest}, data=blob, auth=("joey", password), timeout=5)
        assert pushed.status_code == 201
    finally:
        stop(proc)
    assert "provisioning with default user" not in log.read_text(), "the htpasswd file was not where it said"
    # Blobs land on the claim's mount path, as REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY says.
    stored = tmp_path / "pod/var/lib/registry/docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:] / "data"
    assert stored.read_bytes() == blob
